/*
 * libFuzzer target: a state file (FILE.state) as khyve -r and khyvectl
 * --inspect read it, through every check of phase one of a restore
 * (docs/snapshot-format.md section 5, rules 1-7 but the memory file):
 * framing, checksums, every section's decode and the cross-section
 * checks.  `make fuzz` builds it with clang, ASan and UBSan and runs it on
 * the stored samples; anything but a clean refusal or acceptance (a
 * crash, a sanitizer report, a leak, a timeout, more than the memory
 * limit) is a finding.
 */
#include <stddef.h>
#include <stdint.h>

#include "khyve/snapsec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct snap_state s;
	char err[512];

	if (!snapsec__read_state(data, size, &s, err, sizeof(err)))
		snap_state__free(&s);
	return 0;
}
