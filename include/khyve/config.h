/* The whole VM configuration, as given on the command line. */
#ifndef KHYVE_CONFIG_H
#define KHYVE_CONFIG_H

#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>

#define CONFIG_MAX_MODULES 32

enum console_backend {
	CONSOLE_STDIO = 0,	/* default: the terminal khyve runs on */
	CONSOLE_FILE,		/* output appended to a file, no input */
	CONSOLE_NULL,		/* UART present, output discarded */
};

struct module_config {
	char *path;
	char *string;	/* the multiboot module string: path plus arguments */
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
};

/*
 * Parse argv into cfg.  On a usage error returns -EINVAL after printing one
 * line naming the problem; returns 1 when --help was printed.
 */
int config__parse(struct vm_config *cfg, int argc, char **argv);
void config__free(struct vm_config *cfg);
void config__usage(FILE *f);

#endif
