#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "khyve/config.h"
#include "khyve/log.h"
#include "khyve/memmap.h"
#include "khyve/pci.h"
#include "khyve/util.h"

#define DEBUG_EXIT_DEFAULT_PORT 0xf4
#define VMNAME_MAX 64

void config__usage(FILE *f)
{
	fprintf(f,
"Usage: khyve [-c NCPU] [-m SIZE] -k KERNEL [-A CMDLINE] [-i MODULE]...\n"
"             [-l com1,stdio|com1,file:PATH|com1,null] [--debug-exit[=PORT]]\n"
"             [-s SLOT[:FUNC],DEVICE[,OPTIONS]]... [--rundir DIR] [--no-seccomp]\n"
"             [-u USER] [-v] VMNAME\n"
"       khyve -r FILE [-l com1,BACKEND] [-s SLOT,DEVICE,OPTIONS]... [--force-disk]\n"
"             [--rundir DIR] [--no-seccomp] [-u USER] [-v] [VMNAME]\n"
"\n"
"Run a Linux or multiboot kernel in a KVM virtual machine named VMNAME, or restore\n"
"one from the snapshot FILE (FILE.state says everything else).\n"
"\n"
"  -c, --cpus NCPU        number of vCPUs (default 1)\n"
"  -m, --memory SIZE      guest RAM, with K, M, G or T suffix; a bare number\n"
"                         is MiB (default 256M)\n"
"  -k, --kernel KERNEL    a Linux bzImage, or a multiboot (v1) kernel image:\n"
"                         ELF32, ELF64 or a.out-kludge\n"
"  -A, --cmdline CMDLINE  kernel command line (Linux: e.g. \"console=ttyS0\";\n"
"                         a multiboot kernel sees \"KERNEL CMDLINE\")\n"
"  -i, --module MODULE    Linux: the initrd.  Multiboot: a module \"PATH [ARGS]\",\n"
"                         the whole string its string; repeat for more, in order\n"
"  -l com1,BACKEND        COM1 (16550A, port 0x3f8, IRQ 4) backend: stdio\n"
"                         (default; raw terminal, Ctrl-A x quits), file:PATH\n"
"                         (output appended to PATH), or null\n"
"  -s SLOT[:FUNC],DEVICE[,OPTIONS]\n"
"                         a PCI function on bus 0: SLOT 0-31, FUNC 0-7\n"
"                         (default 0); DEVICE: virtio-rnd (entropy from\n"
"                         getrandom), virtio-console,stdio|file:PATH|\n"
"                         socket:PATH|null, virtio-blk,PATH[,ro][,serial=ID],\n"
"                         virtio-net,tap=NAME[,mac=MAC], hostbridge\n"
"                         (00:00.0, added anyway)\n"
"      --debug-exit[=PORT]  QEMU isa-debug-exit compatible device (default\n"
"                         port 0xf4): a guest write of V exits with (V<<1)|1\n"
"  -r, --restore FILE     restore the snapshot FILE (+ FILE.state); other\n"
"                         options must match the snapshot, except -l com1\n"
"                         which may override its backend, and -s (all or\n"
"                         none, same slots and devices) whose OPTIONS may\n"
"                         name other backends (a moved disk image)\n"
"      --force-disk       with -r: use disks that changed since the snapshot\n"
"      --rundir DIR       directory of the control socket VMNAME.sock\n"
"                         (default /run/khyve)\n"
"      --no-seccomp       do not confine khyve's threads with seccomp-bpf\n"
"                         allow-lists (on by default, after set-up)\n"
"  -u, --user USER        once everything is open, run as USER (its uid, gid\n"
"                         and groups); a checkpoint's directory must be\n"
"                         writable by USER\n"
"  -v, --verbose          more messages (twice: debug)\n"
"  -h, --help             this help\n"
"\n"
"Exit status: 0 powered off, 1 reset, 2 halted, 3 triple fault, 4 error,\n"
"5 suspended (saved by khyvectl --suspend);\n"
"with --debug-exit, the value the guest wrote as described above.\n");
}

/* Replace *dst with a copy of s. */
static int set_str(char **dst, const char *s)
{
	char *d = strdup(s);

	if (!d) {
		pr_err("out of memory");
		return -ENOMEM;
	}
	free(*dst);
	*dst = d;
	return 0;
}

static int parse_com1(struct vm_config *cfg, const char *arg)
{
	const char *b;

	if (strncmp(arg, "com1,", 5) != 0) {
		pr_err("invalid -l '%s': expected com1,stdio, com1,file:PATH or com1,null", arg);
		return -EINVAL;
	}
	b = arg + 5;
	free(cfg->com1_path);
	cfg->com1_path = NULL;
	if (!strcmp(b, "stdio")) {
		cfg->com1 = CONSOLE_STDIO;
	} else if (!strcmp(b, "null")) {
		cfg->com1 = CONSOLE_NULL;
	} else if (!strncmp(b, "file:", 5) && b[5]) {
		cfg->com1 = CONSOLE_FILE;
		return set_str(&cfg->com1_path, b + 5);
	} else {
		pr_err("invalid COM1 backend '%s': expected stdio, file:PATH or null", b);
		return -EINVAL;
	}
	return 0;
}

/* -s SLOT[:FUNC],DEVICE[,OPTIONS]; the table is checked as a whole later */
static int parse_slot(struct vm_config *cfg, const char *arg)
{
	struct slot_config *sc;
	const char *comma = strchr(arg, ',');
	char num[16], *colon;
	uint64_t slot, func = 0;
	size_t n = comma ? (size_t)(comma - arg) : strlen(arg);

	if (!comma || !comma[1] || comma[1] == ',' || n == 0 || n >= sizeof(num)) {
		pr_err("invalid -s '%s': expected SLOT[:FUNC],DEVICE[,OPTIONS]", arg);
		return -EINVAL;
	}
	memcpy(num, arg, n);
	num[n] = '\0';
	colon = strchr(num, ':');
	if (colon)
		*colon = '\0';
	if (util__parse_u64(num, &slot) || slot >= CONFIG_PCI_SLOTS ||
	    (colon && (util__parse_u64(colon + 1, &func) || func >= CONFIG_PCI_FUNCS))) {
		pr_err("invalid -s '%s': slot must be 0-31 and function 0-7", arg);
		return -EINVAL;
	}
	if (cfg->nslots == CONFIG_MAX_SLOTS) {
		pr_err("too many -s: at most %d", CONFIG_MAX_SLOTS);
		return -EINVAL;
	}
	sc = &cfg->slots[cfg->nslots++];
	sc->slot = (uint8_t)slot;
	sc->func = (uint8_t)func;
	if (set_str(&sc->device, comma + 1))
		return -ENOMEM;
	colon = strchr(sc->device, ',');
	if (colon) {
		*colon = '\0';
		if (set_str(&sc->opts, colon + 1))
			return -ENOMEM;
	}
	return 0;
}

int config__check_slots(const struct vm_config *cfg, char *err, size_t errlen)
{
	char why[200];

	for (unsigned int i = 0; i < cfg->nslots; i++) {
		const struct slot_config *a = &cfg->slots[i];
		bool has_f0 = false;

		if (a->slot >= CONFIG_PCI_SLOTS || a->func >= CONFIG_PCI_FUNCS) {
			snprintf(err, errlen, "PCI slot %u:%u does not exist (slot 0-31, function 0-7)",
				 a->slot, a->func);
			return -EINVAL;
		}
		why[0] = '\0';
		if (!a->device || pci__check_device(a->device, a->opts, why, sizeof(why))) {
			snprintf(err, errlen, "-s %u:%u: %s", a->slot, a->func, why[0] ? why : "no device");
			return -EINVAL;
		}
		if (!a->slot && !a->func && strcmp(a->device, "hostbridge")) {
			snprintf(err, errlen, "-s 0:0: slot 0 function 0 is the host bridge, not %s", a->device);
			return -EINVAL;
		}
		if (a->slot && !strcmp(a->device, "hostbridge")) {
			snprintf(err, errlen, "-s %u:%u: the host bridge belongs at slot 0", a->slot, a->func);
			return -EINVAL;
		}
		for (unsigned int j = 0; j < cfg->nslots; j++) {
			const struct slot_config *b = &cfg->slots[j];

			if (j < i && b->slot == a->slot && b->func == a->func) {
				snprintf(err, errlen, "duplicate PCI slot %u:%u (%s and %s)", a->slot, a->func,
					 b->device, a->device);
				return -EINVAL;
			}
			has_f0 |= b->slot == a->slot && b->func == 0;
		}
		if (a->func && !has_f0 && a->slot) {
			snprintf(err, errlen, "-s %u:%u: slot %u has no function 0, so guests would not find it",
				 a->slot, a->func, a->slot);
			return -EINVAL;
		}
	}
	return 0;
}

bool config__valid_name(const char *s)
{
	size_t n = strlen(s);

	if (!n || n > VMNAME_MAX || s[0] == '.' || s[0] == '-')
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.')
			return false;
	return true;
}

static int parse_memory(struct vm_config *cfg, const char *arg)
{
	uint64_t v;

	if (util__parse_size(arg, &v)) {
		pr_err("invalid memory size '%s': expected a number with an optional "
		       "K, M, G or T suffix", arg);
		return -EINVAL;
	}
	if (v < MEM_MIN_SIZE) {
		pr_err("memory size '%s' is too small: at least 2M", arg);
		return -EINVAL;
	}
	if (v & 4095) {
		pr_err("memory size '%s' is not a multiple of 4K", arg);
		return -EINVAL;
	}
	cfg->mem_size = v;
	return 0;
}

static int parse_module(struct vm_config *cfg, const char *arg)
{
	struct module_config *m;
	size_t plen = strcspn(arg, " \t");

	if (cfg->nmodules == CONFIG_MAX_MODULES) {
		pr_err("too many modules: at most %d", CONFIG_MAX_MODULES);
		return -EINVAL;
	}
	if (!plen) {
		pr_err("invalid module '%s': expected \"PATH [ARGS]\"", arg);
		return -EINVAL;
	}
	m = &cfg->modules[cfg->nmodules++];
	if (set_str(&m->string, arg) || set_str(&m->path, arg))
		return -ENOMEM;
	m->path[plen] = '\0';
	return 0;
}

static int parse_debug_exit(struct vm_config *cfg, const char *arg)
{
	uint64_t v;

	cfg->debug_exit = true;
	if (arg) {
		if (util__parse_u64(arg, &v) || v > 0xfffc) {
			pr_err("invalid --debug-exit port '%s': expected 0 to 0xfffc", arg);
			return -EINVAL;
		}
		cfg->debug_exit_port = (uint16_t)v;
	}
	return 0;
}

/* A string option that must not be empty (-r FILE, --rundir DIR). */
static int parse_nonempty(char **dst, const char *arg, const char *empty)
{
	if (!*arg) {
		pr_err("%s", empty);
		return -EINVAL;
	}
	return set_str(dst, arg) ? -ENOMEM : 0;
}

enum { OPT_DEBUG_EXIT = 256, OPT_RUNDIR, OPT_FORCE_DISK, OPT_NO_SECCOMP };

/* One option getopt_long() returned: 0, 1 for --help, or -errno (after a message). */
static int parse_option(struct vm_config *cfg, int c, char **argv)
{
	uint64_t v;
	int r;

	switch (c) {
	case 'c':
		if (util__parse_u64(optarg, &v) || v == 0 || v > 4096) {
			pr_err("invalid vCPU count '%s': expected a number from 1", optarg);
			return -EINVAL;
		}
		cfg->ncpus = (unsigned int)v;
		cfg->given |= GIVEN_CPUS;
		return 0;
	case 'm':
		r = parse_memory(cfg, optarg);
		cfg->given |= r ? 0 : GIVEN_MEMORY;
		return r;
	case 'k':
		cfg->given |= GIVEN_KERNEL;
		return set_str(&cfg->kernel, optarg) ? -ENOMEM : 0;
	case 'A':
		cfg->given |= GIVEN_CMDLINE;
		return set_str(&cfg->cmdline, optarg) ? -ENOMEM : 0;
	case 'i':
		r = parse_module(cfg, optarg);
		cfg->given |= r ? 0 : GIVEN_MODULE;
		return r;
	case 'l':
		if (parse_com1(cfg, optarg))
			return -EINVAL;
		cfg->given |= GIVEN_COM1;
		return 0;
	case 's':
		r = parse_slot(cfg, optarg);
		cfg->given |= r ? 0 : GIVEN_SLOTS;
		return r;
	case OPT_FORCE_DISK:
		cfg->force_disk = true;
		return 0;
	case OPT_NO_SECCOMP:
		cfg->no_seccomp = true;
		return 0;
	case OPT_DEBUG_EXIT:
		cfg->given |= GIVEN_DEBUG_EXIT;
		return parse_debug_exit(cfg, optarg);
	case 'r':
		return parse_nonempty(&cfg->restore, optarg, "-r needs a snapshot FILE");
	case OPT_RUNDIR:
		return parse_nonempty(&cfg->rundir, optarg, "--rundir needs a directory");
	case 'u':
		return parse_nonempty(&cfg->user, optarg, "-u needs a USER");
	case 'v':
		log_level++;
		return 0;
	case 'h':
		config__usage(stdout);
		return 1;
	case ':':
		pr_err("option '%s' needs an argument", argv[optind - 1]);
		return -EINVAL;
	default:
		if (optopt)
			pr_err("unknown option '-%c'", optopt);
		else
			pr_err("unknown option '%s'", argv[optind - 1]);
		return -EINVAL;
	}
}

/* After the options: the slots as a whole, VMNAME, and what a fresh boot needs. */
static int parse_rest(struct vm_config *cfg, int argc, char **argv)
{
	if (cfg->nslots) {
		char why[256];

		if (config__check_slots(cfg, why, sizeof(why))) {
			pr_err("%s", why);
			return -EINVAL;
		}
	}
	if (optind >= argc) {
		if (cfg->restore)
			return 0;	/* the name comes from the snapshot */
		pr_err("missing VMNAME (see khyve --help)");
		return -EINVAL;
	}
	if (optind + 1 < argc) {
		pr_err("unexpected argument '%s' after VMNAME '%s'", argv[optind + 1], argv[optind]);
		return -EINVAL;
	}
	if (!config__valid_name(argv[optind])) {
		pr_err("invalid VMNAME '%s': use up to %d letters, digits, '.', '-' or '_'",
		       argv[optind], VMNAME_MAX);
		return -EINVAL;
	}
	if (set_str(&cfg->name, argv[optind]))
		return -ENOMEM;
	if (!cfg->kernel && !cfg->restore) {
		pr_err("missing -k KERNEL");
		return -EINVAL;
	}
	return 0;
}

int config__parse(struct vm_config *cfg, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "cpus", required_argument, NULL, 'c' },
		{ "memory", required_argument, NULL, 'm' },
		{ "kernel", required_argument, NULL, 'k' },
		{ "cmdline", required_argument, NULL, 'A' },
		{ "module", required_argument, NULL, 'i' },
		{ "lpc", required_argument, NULL, 'l' },
		{ "slot", required_argument, NULL, 's' },
		{ "debug-exit", optional_argument, NULL, OPT_DEBUG_EXIT },
		{ "restore", required_argument, NULL, 'r' },
		{ "rundir", required_argument, NULL, OPT_RUNDIR },
		{ "user", required_argument, NULL, 'u' },
		{ "force-disk", no_argument, NULL, OPT_FORCE_DISK },
		{ "no-seccomp", no_argument, NULL, OPT_NO_SECCOMP },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	memset(cfg, 0, sizeof(*cfg));
	cfg->ncpus = 1;
	cfg->mem_size = 256 * MiB;
	cfg->com1 = CONSOLE_STDIO;
	cfg->debug_exit_port = DEBUG_EXIT_DEFAULT_PORT;

	opterr = 0;
	optind = 0;	/* glibc: a full reset, also of a half-read "-xyz" group */
	while ((c = getopt_long(argc, argv, ":c:m:k:A:i:l:s:r:u:vh", opts, NULL)) != -1) {
		int r = parse_option(cfg, c, argv);

		if (r)
			return r;
	}
	return parse_rest(cfg, argc, argv);
}

void config__free(struct vm_config *cfg)
{
	free(cfg->name);
	free(cfg->kernel);
	free(cfg->cmdline);
	free(cfg->com1_path);
	free(cfg->rundir);
	free(cfg->restore);
	free(cfg->user);
	for (unsigned int i = 0; i < cfg->nmodules; i++) {
		free(cfg->modules[i].path);
		free(cfg->modules[i].string);
	}
	for (unsigned int i = 0; i < cfg->nslots; i++) {
		free(cfg->slots[i].device);
		free(cfg->slots[i].opts);
	}
	memset(cfg, 0, sizeof(*cfg));
}
