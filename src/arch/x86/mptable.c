/*
 * MP table (Intel MultiProcessor Specification 1.4).  Guests without ACPI
 * support, such as the test guest, learn the processors' APIC IDs and the
 * IOAPIC from it.  The interrupt entries describe the routing that
 * irqchip.c installs: ISA IRQ 0 on IOAPIC pin 2, other ISA IRQs identity,
 * the 8259 as ExtINT on pin 0.
 */
#include <cpuid.h>
#include <errno.h>
#include <string.h>

#include "khyve/mptable.h"
#include "khyve/util.h"

struct mpf {
	char sig[4];
	uint32_t physptr;
	uint8_t length, spec_rev, checksum, feature[5];
} __attribute__((packed));

struct mpc_header {
	char sig[4];
	uint16_t length;
	uint8_t spec_rev, checksum;
	char oem[8], product[12];
	uint32_t oem_ptr;
	uint16_t oem_size, count;
	uint32_t lapic;
	uint16_t ext_length;
	uint8_t ext_checksum, reserved;
} __attribute__((packed));

struct mpc_cpu {
	uint8_t type, apic_id, apic_ver, flags;
	uint32_t signature, features;
	uint32_t reserved[2];
} __attribute__((packed));

struct mpc_bus {
	uint8_t type, id;
	char name[6];
} __attribute__((packed));

struct mpc_ioapic {
	uint8_t type, id, ver, flags;
	uint32_t addr;
} __attribute__((packed));

struct mpc_intsrc {
	uint8_t type, irqtype;
	uint16_t flags;
	uint8_t src_bus, src_irq, dst_apic, dst_pin;
} __attribute__((packed));

enum { MP_CPU = 0, MP_BUS = 1, MP_IOAPIC = 2, MP_INTSRC = 3, MP_LINTSRC = 4 };
enum { MP_INT = 0, MP_NMI = 1, MP_EXTINT = 3 };

static uint8_t checksum(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t s = 0;

	while (len--)
		s += *b++;
	return (uint8_t)-s;
}

int mptable__write(struct guest_mem *mem, unsigned int ncpus)
{
	return mptable__write_pci(mem, ncpus, false, NULL, 0);
}

int mptable__write_pci(struct guest_mem *mem, unsigned int ncpus, bool pci,
		       const struct mptable_pci_irq *irqs, unsigned int nirqs)
{
	size_t size = sizeof(struct mpf) + sizeof(struct mpc_header) +
		      ncpus * sizeof(struct mpc_cpu) + (pci ? 2 : 1) * sizeof(struct mpc_bus) +
		      sizeof(struct mpc_ioapic) + (18 + (pci ? nirqs : 0)) * sizeof(struct mpc_intsrc);
	uint8_t isa_bus = pci ? 1 : 0;
	uint8_t *base = memmap__gpa_to_hva(mem, MPTABLE_ADDR, size);
	unsigned int eax = 0, ebx, ecx, edx = 0, count = 0;
	uint8_t ioapic_id = (uint8_t)ncpus;
	struct mpc_header *h;
	struct mpf *f;
	uint8_t *p;

	if (!base || size > MEM_BIOS_END - MPTABLE_ADDR || ncpus > 254 || (pci && nirqs > 256))
		return -ENOSPC;
	__cpuid(1, eax, ebx, ecx, edx);
	(void)ebx; (void)ecx;
	memset(base, 0, size);

	f = (struct mpf *)base;
	h = (struct mpc_header *)(f + 1);
	p = (uint8_t *)(h + 1);

	for (unsigned int i = 0; i < ncpus; i++, count++) {
		struct mpc_cpu c = {
			.type = MP_CPU, .apic_id = (uint8_t)i, .apic_ver = 0x14,
			.flags = 1 | (i == 0 ? 2 : 0), .signature = eax, .features = edx,
		};
		memcpy(p, &c, sizeof(c));
		p += sizeof(c);
	}
	if (pci) {
		struct mpc_bus pbus = { .type = MP_BUS, .id = 0, .name = { 'P', 'C', 'I', ' ', ' ', ' ' } };

		memcpy(p, &pbus, sizeof(pbus));
		p += sizeof(pbus);
		count++;
	}
	struct mpc_bus bus = { .type = MP_BUS, .id = isa_bus, .name = { 'I', 'S', 'A', ' ', ' ', ' ' } };
	memcpy(p, &bus, sizeof(bus));
	p += sizeof(bus);
	count++;
	struct mpc_ioapic io = { .type = MP_IOAPIC, .id = ioapic_id, .ver = 0x11, .flags = 1,
				 .addr = IOAPIC_ADDR };
	memcpy(p, &io, sizeof(io));
	p += sizeof(io);
	count++;
	for (unsigned int irq = 0; irq < 16; irq++) {
		struct mpc_intsrc s = { .type = MP_INTSRC, .irqtype = MP_INT, .src_bus = isa_bus,
					.src_irq = (uint8_t)irq, .dst_apic = ioapic_id,
					.dst_pin = (uint8_t)(irq == 0 ? 2 : irq) };
		if (irq == 2) {	/* cascade: the 8259 output arrives as ExtINT on pin 0 */
			s.irqtype = MP_EXTINT;
			s.src_irq = 0;
			s.dst_pin = 0;
		}
		memcpy(p, &s, sizeof(s));
		p += sizeof(s);
		count++;
	}
	for (unsigned int i = 0; pci && i < nirqs; i++) {
		/* PCI: level-triggered, active low; source = device << 2 | INTx# */
		struct mpc_intsrc s = { .type = MP_INTSRC, .irqtype = MP_INT, .flags = 0xf, .src_bus = 0,
					.src_irq = (uint8_t)(irqs[i].slot << 2 | (irqs[i].pin - 1)),
					.dst_apic = ioapic_id, .dst_pin = irqs[i].gsi };
		memcpy(p, &s, sizeof(s));
		p += sizeof(s);
		count++;
	}
	struct mpc_intsrc l0 = { .type = MP_LINTSRC, .irqtype = MP_EXTINT, .dst_apic = 0xff, .dst_pin = 0 };
	struct mpc_intsrc l1 = { .type = MP_LINTSRC, .irqtype = MP_NMI, .dst_apic = 0xff, .dst_pin = 1 };
	memcpy(p, &l0, sizeof(l0));
	p += sizeof(l0);
	memcpy(p, &l1, sizeof(l1));
	p += sizeof(l1);
	count += 2;

	memcpy(h->sig, "PCMP", 4);
	h->length = (uint16_t)(p - (uint8_t *)h);
	h->spec_rev = 4;
	memcpy(h->oem, "KHYVE   ", 8);
	memcpy(h->product, "KHYVE VM    ", 12);
	h->count = (uint16_t)count;
	h->lapic = LAPIC_ADDR;
	h->checksum = checksum(h, h->length);

	memcpy(f->sig, "_MP_", 4);
	f->physptr = (uint32_t)(MPTABLE_ADDR + sizeof(*f));
	f->length = 1;
	f->spec_rev = 4;
	f->checksum = checksum(f, sizeof(*f));
	return 0;
}
