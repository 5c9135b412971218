/*
 * The two registers of khyve's hardware-reduced ACPI platform (acpi.h):
 * SLEEP_CONTROL_REG, where the guest's S5 (SLP_TYP 5 with SLP_EN) ends the
 * VM with status 0, and RESET_REG, where ACPI_RESET_VALUE ends it with
 * status 1, bhyve's codes for poweroff and reboot.  SLEEP_STATUS_REG reads
 * 0 (no wake event).  Other sleep states are not offered: \_S5 is the only
 * one the DSDT names, so a write of another SLP_TYP is logged and ignored.
 * Stateless, so there is nothing to snapshot.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "khyve/acpi.h"
#include "khyve/device.h"
#include "khyve/log.h"
#include "khyve/vm.h"

#define ACPI_PM_PORTS	3

static void acpi_pm__read(void *opaque, uint64_t off, uint8_t *data, unsigned int len)
{
	(void)opaque;
	(void)off;
	memset(data, 0, len);
}

static void acpi_pm__write(void *opaque, uint64_t off, const uint8_t *data, unsigned int len)
{
	struct vm *vm = opaque;
	uint8_t v = data[0];

	(void)len;
	if (off == ACPI_SLEEP_CTL_PORT - ACPI_SLEEP_CTL_PORT && (v & ACPI_SLP_EN)) {
		unsigned int typ = (v >> 2) & 7;

		if (typ == ACPI_SLP_TYP_S5) {
			pr_debug("guest entered S5 (ACPI poweroff)");
			exit__request(vm, VM_EXIT_POWEROFF);
		} else {
			pr_info("guest asked for ACPI sleep type %u, which this machine does not offer", typ);
		}
	} else if (off == ACPI_RESET_PORT - ACPI_SLEEP_CTL_PORT && v == ACPI_RESET_VALUE) {
		pr_debug("guest reset through the ACPI reset register");
		exit__request(vm, VM_EXIT_RESET);
	}
}

static int acpi_pm__init(struct vm *vm, void **priv, char *err, size_t errlen)
{
	int ret;

	*priv = NULL;
	ret = bus__register(&vm->bus, BUS_PIO, ACPI_SLEEP_CTL_PORT, ACPI_PM_PORTS, acpi_pm__read,
			    acpi_pm__write, vm, "acpi-pm");
	if (ret)
		snprintf(err, errlen, "ACPI sleep/reset ports 0x%x-0x%x: %s", ACPI_SLEEP_CTL_PORT,
			 ACPI_SLEEP_CTL_PORT + ACPI_PM_PORTS - 1, strerror(-ret));
	return ret;
}

static const struct device_ops acpi_pm_ops = {
	.name = "acpi-pm",
	.init = acpi_pm__init,
};
DEVICE_REGISTER(acpi_pm_ops, DEVICE_ORDER_ACPI_PM);
