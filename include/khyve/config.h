/* The whole VM configuration, as given on the command line. */
#ifndef KHYVE_CONFIG_H
#define KHYVE_CONFIG_H

#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>

#define CONFIG_MAX_MODULES 32
#define CONFIG_MAX_SLOTS 32
#define CONFIG_PCI_SLOTS 32	/* PCI device numbers 0..31 on bus 0 */
#define CONFIG_PCI_FUNCS 8

enum console_backend {
	CONSOLE_STDIO = 0,	/* default: the terminal khyve runs on */
	CONSOLE_FILE,		/* output appended to a file, no input */
	CONSOLE_NULL,		/* UART present, output discarded */
};

struct module_config {
	char *path;
	char *string;	/* the multiboot module string: path plus arguments */
};

/* -s SLOT[:FUNC],DEVICE[,OPTIONS]: one PCI function on bus 0 */
struct slot_config {
	uint8_t slot, func;
	char *device;	/* a registered PCI device type, e.g. "virtio-rnd" */
	char *opts;	/* everything after DEVICE, or NULL */
	/* restore only: -s gave other OPTIONS than the snapshot's (a moved disk, another backend) */
	bool overridden;
};

struct vm_config {
	char *name;
	unsigned int ncpus;
	uint64_t mem_size;
	char *kernel;
	char *cmdline;
	unsigned int nmodules;
	struct module_config modules[CONFIG_MAX_MODULES];
	enum console_backend com1;
	char *com1_path;
	bool debug_exit;
	uint16_t debug_exit_port;
	unsigned int nslots;	/* in command-line order */
	struct slot_config slots[CONFIG_MAX_SLOTS];
	char *rundir;		/* control socket directory, NULL: default */
	char *restore;		/* -r FILE: restore from this snapshot */
	bool force_disk;	/* -r: accept disks that changed since the snapshot */
	bool no_seccomp;	/* --no-seccomp: threads run without allow-lists */
	char *user;		/* -u USER: drop root to USER once set up, or NULL */
	/* which options were given explicitly (for -r: must match or override) */
	unsigned int given;
};

enum config_given {
	GIVEN_CPUS = 1u << 0,
	GIVEN_MEMORY = 1u << 1,
	GIVEN_KERNEL = 1u << 2,
	GIVEN_CMDLINE = 1u << 3,
	GIVEN_MODULE = 1u << 4,
	GIVEN_COM1 = 1u << 5,
	GIVEN_DEBUG_EXIT = 1u << 6,
	GIVEN_SLOTS = 1u << 7,
};

/*
 * Parse argv into cfg.  On a usage error returns -EINVAL after printing one
 * line naming the problem; returns 1 when --help was printed.
 */
int config__parse(struct vm_config *cfg, int argc, char **argv);
void config__free(struct vm_config *cfg);
void config__usage(FILE *f);
/*
 * Check the slot table as a whole: slot and function in range, no slot
 * given twice, function 0 present wherever another function is, 00:00.0
 * only for the host bridge, every device known with valid options.
 * 0, or -EINVAL with one line in err.
 */
int config__check_slots(const struct vm_config *cfg, char *err, size_t errlen);
/* VM names: 1-64 of [A-Za-z0-9._-], not starting with "." or "-". */
bool config__valid_name(const char *s);

#endif
