#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "khyve/uart16550.h"

static unsigned int fifo_depth(const struct uart16550 *u)
{
	return (u->fcr & UART_FCR_ENABLE) ? UART_FIFO_SIZE : 1;
}

static unsigned int rx_trigger(const struct uart16550 *u)
{
	static const unsigned int level[4] = { 1, 4, 8, 14 };

	return (u->fcr & UART_FCR_ENABLE) ? level[u->fcr >> 6] : 1;
}

static uint8_t uart__iir(const struct uart16550 *u)
{
	uint8_t fifo = (u->fcr & UART_FCR_ENABLE) ? UART_IIR_FIFO : 0;

	if ((u->ier & UART_IER_RLSI) && (u->lsr & UART_LSR_OE))
		return fifo | UART_IIR_RLSI;
	if ((u->ier & UART_IER_RDI) && u->rx_count) {
		/* below the trigger level the 16550 reports a character
		 * timeout; we have no clock, so report it at once */
		return fifo | (u->rx_count >= rx_trigger(u) ? UART_IIR_RDI : UART_IIR_CTI);
	}
	if ((u->ier & UART_IER_THRI) && u->thri_pending)
		return fifo | UART_IIR_THRI;
	if ((u->ier & UART_IER_MSI) && (u->msr & 0x0f))
		return fifo | UART_IIR_MSI;
	return fifo | UART_IIR_NO_INT;
}

static void uart__update_irq(struct uart16550 *u)
{
	int level = !(uart__iir(u) & UART_IIR_NO_INT);

	if (level != u->irq_level) {
		u->irq_level = level;
		if (u->set_irq)
			u->set_irq(u->opaque, level);
	}
}

/* In loopback the modem inputs follow the modem outputs. */
static void uart__update_msr(struct uart16550 *u)
{
	uint8_t in;

	if (u->mcr & UART_MCR_LOOP) {
		in = 0;
		if (u->mcr & UART_MCR_RTS)  in |= UART_MSR_CTS;
		if (u->mcr & UART_MCR_DTR)  in |= UART_MSR_DSR;
		if (u->mcr & UART_MCR_OUT1) in |= UART_MSR_RI;
		if (u->mcr & UART_MCR_OUT2) in |= UART_MSR_DCD;
	} else {
		in = UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS;
	}
	/* delta bits: CTS, DSR, trailing edge of RI, DCD */
	u->msr |= (uint8_t)(((in ^ u->msr) >> 4) & 0x0b);
	if ((u->msr & UART_MSR_RI) && !(in & UART_MSR_RI))
		u->msr |= 0x04;
	u->msr = (u->msr & 0x0f) | in;
}

void uart__save(const struct uart16550 *u, struct uart16550_state *s)
{
	memset(s, 0, sizeof(*s));
	s->ier = u->ier; s->lcr = u->lcr; s->mcr = u->mcr; s->lsr = u->lsr; s->msr = u->msr;
	s->scr = u->scr; s->dll = u->dll; s->dlm = u->dlm; s->fcr = u->fcr;
	s->thri_pending = u->thri_pending;
	s->rx_count = (uint8_t)u->rx_count;
	for (unsigned int i = 0; i < u->rx_count; i++)
		s->rx[i] = u->rx[(u->rx_head + i) % UART_FIFO_SIZE];
	s->irq_level = (uint8_t)u->irq_level;
}

int uart__check_state(const struct uart16550_state *s, char *err, size_t errlen)
{
	const char *bad = NULL;

	if (s->rx_count > ((s->fcr & UART_FCR_ENABLE) ? UART_FIFO_SIZE : 1))
		bad = "rx_count exceeds the FIFO depth";
	else if (s->ier & 0xf0)
		bad = "ier has reserved bits set";
	else if (s->mcr & 0xe0)
		bad = "mcr has reserved bits set";
	else if (s->fcr & ~(UART_FCR_ENABLE | 0xc0))
		bad = "fcr has bits that are not state";
	else if (s->irq_level > 1)
		bad = "irq_level is not 0 or 1";
	if (bad) {
		snprintf(err, errlen, "%s", bad);
		return -EINVAL;
	}
	return 0;
}

void uart__restore(struct uart16550 *u, const struct uart16550_state *s)
{
	u->ier = s->ier; u->lcr = s->lcr; u->mcr = s->mcr; u->lsr = s->lsr; u->msr = s->msr;
	u->scr = s->scr; u->dll = s->dll; u->dlm = s->dlm; u->fcr = s->fcr;
	u->thri_pending = s->thri_pending;
	u->rx_head = 0;
	u->rx_count = s->rx_count;
	memcpy(u->rx, s->rx, sizeof(u->rx));
	/* the interrupt controller's line state was restored with it */
	u->irq_level = s->irq_level;
}

void uart__init(struct uart16550 *u, void (*tx)(void *, uint8_t),
		void (*set_irq)(void *, int), void *opaque)
{
	memset(u, 0, sizeof(*u));
	u->lsr = UART_LSR_THRE | UART_LSR_TEMT;
	u->msr = UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS;
	u->dll = 12;	/* 9600 baud, as firmware leaves it */
	u->lcr = 0x03;	/* 8N1 */
	u->tx = tx;
	u->set_irq = set_irq;
	u->opaque = opaque;
}

unsigned int uart__rx_space(const struct uart16550 *u)
{
	return fifo_depth(u) - u->rx_count;
}

static unsigned int rx_push(struct uart16550 *u, const uint8_t *buf, unsigned int len)
{
	unsigned int n = 0;

	while (n < len && u->rx_count < fifo_depth(u)) {
		u->rx[(u->rx_head + u->rx_count) % UART_FIFO_SIZE] = buf[n++];
		u->rx_count++;
	}
	return n;
}

unsigned int uart__rx_push(struct uart16550 *u, const uint8_t *buf, unsigned int len)
{
	unsigned int n;

	if (u->mcr & UART_MCR_LOOP)	/* line disconnected from the outside */
		return 0;
	n = rx_push(u, buf, len);
	uart__update_irq(u);
	return n;
}

uint8_t uart__read(struct uart16550 *u, unsigned int reg)
{
	uint8_t v = 0;

	switch (reg & 7) {
	case UART_RBR:
		if (u->lcr & UART_LCR_DLAB) {
			v = u->dll;
			break;
		}
		if (u->rx_count) {
			v = u->rx[u->rx_head];
			u->rx_head = (u->rx_head + 1) % UART_FIFO_SIZE;
			u->rx_count--;
		}
		break;
	case UART_IER:
		v = (u->lcr & UART_LCR_DLAB) ? u->dlm : u->ier;
		break;
	case UART_IIR:
		v = uart__iir(u);
		/* reading IIR acknowledges a THR-empty interrupt */
		if ((v & 0x0f) == UART_IIR_THRI)
			u->thri_pending = false;
		break;
	case UART_LCR:
		v = u->lcr;
		break;
	case UART_MCR:
		v = u->mcr;
		break;
	case UART_LSR:
		v = u->lsr | (u->rx_count ? UART_LSR_DR : 0);
		u->lsr &= ~UART_LSR_OE;
		break;
	case UART_MSR:
		v = u->msr;
		u->msr &= 0xf0;
		break;
	case UART_SCR:
		v = u->scr;
		break;
	}
	uart__update_irq(u);
	return v;
}

void uart__write(struct uart16550 *u, unsigned int reg, uint8_t val)
{
	switch (reg & 7) {
	case UART_THR:
		if (u->lcr & UART_LCR_DLAB) {
			u->dll = val;
			break;
		}
		if (u->mcr & UART_MCR_LOOP) {
			if (!rx_push(u, &val, 1))
				u->lsr |= UART_LSR_OE;
		} else if (u->tx) {
			u->tx(u->opaque, val);
		}
		/* sent at once: the holding register is empty again */
		u->thri_pending = true;
		break;
	case UART_IER:
		if (u->lcr & UART_LCR_DLAB) {
			u->dlm = val;
			break;
		}
		/* enabling THRI with an empty THR raises the interrupt */
		if ((val & UART_IER_THRI) && !(u->ier & UART_IER_THRI))
			u->thri_pending = true;
		u->ier = val & 0x0f;
		break;
	case UART_FCR:
		if ((val ^ u->fcr) & UART_FCR_ENABLE)
			u->rx_count = 0;	/* changing FIFO mode empties the FIFOs */
		if (val & UART_FCR_CLR_RX)
			u->rx_count = 0;
		u->fcr = val & (UART_FCR_ENABLE | 0xc0);
		break;
	case UART_LCR:
		u->lcr = val;
		break;
	case UART_MCR:
		u->mcr = val & 0x1f;
		uart__update_msr(u);
		break;
	case UART_LSR:	/* read-only */
	case UART_MSR:
		break;
	case UART_SCR:
		u->scr = val;
		break;
	}
	uart__update_irq(u);
}
