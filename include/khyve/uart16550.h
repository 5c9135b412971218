/*
 * 16550A UART register model, independent of any VM so it can be unit
 * tested.  Transmission is instantaneous; the receive FIFO holds 16 bytes.
 * The caller serialises access (serial.c holds a mutex).
 */
#ifndef KHYVE_UART16550_H
#define KHYVE_UART16550_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UART_FIFO_SIZE 16

/* registers (offsets from the base port) */
enum { UART_RBR = 0, UART_THR = 0, UART_DLL = 0, UART_IER = 1, UART_DLM = 1,
       UART_IIR = 2, UART_FCR = 2, UART_LCR = 3, UART_MCR = 4, UART_LSR = 5,
       UART_MSR = 6, UART_SCR = 7 };

#define UART_IER_RDI	0x01
#define UART_IER_THRI	0x02
#define UART_IER_RLSI	0x04
#define UART_IER_MSI	0x08
#define UART_IIR_NO_INT	0x01
#define UART_IIR_MSI	0x00
#define UART_IIR_THRI	0x02
#define UART_IIR_RDI	0x04
#define UART_IIR_RLSI	0x06
#define UART_IIR_CTI	0x0c
#define UART_IIR_FIFO	0xc0
#define UART_FCR_ENABLE	0x01
#define UART_FCR_CLR_RX	0x02
#define UART_FCR_CLR_TX	0x04
#define UART_LCR_DLAB	0x80
#define UART_MCR_DTR	0x01
#define UART_MCR_RTS	0x02
#define UART_MCR_OUT1	0x04
#define UART_MCR_OUT2	0x08
#define UART_MCR_LOOP	0x10
#define UART_LSR_DR	0x01
#define UART_LSR_OE	0x02
#define UART_LSR_THRE	0x20
#define UART_LSR_TEMT	0x40
#define UART_MSR_CTS	0x10
#define UART_MSR_DSR	0x20
#define UART_MSR_RI	0x40
#define UART_MSR_DCD	0x80

struct uart16550 {
	uint8_t ier, lcr, mcr, lsr, msr, scr, dll, dlm, fcr;
	bool thri_pending;	/* THR-empty interrupt latched */
	uint8_t rx[UART_FIFO_SIZE];
	unsigned int rx_head, rx_count;
	int irq_level;

	void (*tx)(void *opaque, uint8_t byte);
	void (*set_irq)(void *opaque, int level);
	void *opaque;
};

/* Register and FIFO state, for snapshots. */
struct uart16550_state {
	uint8_t ier, lcr, mcr, lsr, msr, scr, dll, dlm, fcr;
	bool thri_pending;
	uint8_t rx_count;
	uint8_t rx[UART_FIFO_SIZE];	/* oldest first */
	uint8_t irq_level;
};

void uart__save(const struct uart16550 *u, struct uart16550_state *s);
/* 0, or -EINVAL with a reason naming the bad field. */
int uart__check_state(const struct uart16550_state *s, char *err, size_t errlen);
void uart__restore(struct uart16550 *u, const struct uart16550_state *s);

void uart__init(struct uart16550 *u, void (*tx)(void *, uint8_t),
		void (*set_irq)(void *, int), void *opaque);
uint8_t uart__read(struct uart16550 *u, unsigned int reg);
void uart__write(struct uart16550 *u, unsigned int reg, uint8_t val);
/* Room left in the receive FIFO. */
unsigned int uart__rx_space(const struct uart16550 *u);
/* Queue received bytes; returns how many were taken. */
unsigned int uart__rx_push(struct uart16550 *u, const uint8_t *buf, unsigned int len);

#endif
