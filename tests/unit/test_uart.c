/* Unit tests for the 16550A register model (src/hw/uart16550.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "khyve/uart16550.h"

struct ctx {
	uint8_t tx[64];
	unsigned int ntx;
	unsigned int irq_calls;
	int level;
};

static void on_tx(void *opaque, uint8_t byte)
{
	struct ctx *c = opaque;

	if (c->ntx < sizeof(c->tx))
		c->tx[c->ntx] = byte;
	c->ntx++;
}

static void on_irq(void *opaque, int level)
{
	struct ctx *c = opaque;

	c->irq_calls++;
	c->level = level;
}

static struct uart16550 u;
static struct ctx ctx;

static int setup(void **state)
{
	(void)state;
	memset(&ctx, 0, sizeof(ctx));
	ctx.level = -1;		/* never called yet */
	memset(&u, 0x5a, sizeof(u));
	uart__init(&u, on_tx, on_irq, &ctx);
	return 0;
}

static uint8_t rd(unsigned int reg)
{
	return uart__read(&u, reg);
}

static void wr(unsigned int reg, uint8_t v)
{
	uart__write(&u, reg, v);
}

static unsigned int push(const char *s)
{
	return uart__rx_push(&u, (const uint8_t *)s, (unsigned int)strlen(s));
}

static void test_reset_values(void **state)
{
	(void)state;
	assert_int_equal(rd(UART_LSR), UART_LSR_THRE | UART_LSR_TEMT);
	assert_int_equal(rd(UART_IIR), UART_IIR_NO_INT);
	assert_int_equal(rd(UART_IER), 0);
	assert_int_equal(rd(UART_LCR), 0x03);
	assert_int_equal(rd(UART_MCR), 0);
	assert_int_equal(rd(UART_MSR), UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS);
	assert_int_equal(rd(UART_SCR), 0);
	assert_int_equal(rd(UART_RBR), 0);	/* empty receiver */
	assert_int_equal(uart__rx_space(&u), 1);	/* FIFO off */
	assert_int_equal(u.irq_level, 0);
	assert_int_equal(ctx.irq_calls, 0);
	assert_int_equal(ctx.ntx, 0);
	/* divisor as firmware leaves it: 9600 baud */
	wr(UART_LCR, 0x83);
	assert_int_equal(rd(UART_DLL), 12);
	assert_int_equal(rd(UART_DLM), 0);
}

static void test_dlab(void **state)
{
	(void)state;
	wr(UART_IER, UART_IER_RDI);
	wr(UART_LCR, UART_LCR_DLAB | 0x03);
	assert_int_equal(rd(UART_LCR), 0x83);
	wr(UART_DLL, 0x01);
	wr(UART_DLM, 0x02);
	assert_int_equal(rd(UART_DLL), 0x01);
	assert_int_equal(rd(UART_DLM), 0x02);
	assert_int_equal(ctx.ntx, 0);		/* a DLL write is not a transmit */
	wr(UART_LCR, 0x03);
	assert_int_equal(rd(UART_IER), UART_IER_RDI);	/* IER untouched by DLM write */
	assert_int_equal(u.dll, 0x01);
	assert_int_equal(u.dlm, 0x02);
	/* DLAB clear: offsets 0/1 are THR/IER again */
	wr(UART_THR, 'z');
	assert_int_equal(ctx.ntx, 1);
	assert_int_equal(ctx.tx[0], 'z');
	wr(UART_IER, 0);
	assert_int_equal(rd(UART_IER), 0);
	wr(UART_LCR, 0x83);
	assert_int_equal(rd(UART_DLL), 0x01);
	assert_int_equal(rd(UART_DLM), 0x02);
	/* a received byte is not readable through DLL */
	wr(UART_LCR, 0x03);
	assert_int_equal(push("Q"), 1);
	wr(UART_LCR, 0x83);
	assert_int_equal(rd(UART_RBR), 0x01);
	wr(UART_LCR, 0x03);
	assert_int_equal(rd(UART_RBR), 'Q');
}

static void test_transmit(void **state)
{
	(void)state;
	wr(UART_THR, 'h');
	wr(UART_THR, 'i');
	wr(UART_THR, 0x00);
	wr(UART_THR, 0xff);
	assert_int_equal(ctx.ntx, 4);
	assert_int_equal(ctx.tx[0], 'h');
	assert_int_equal(ctx.tx[1], 'i');
	assert_int_equal(ctx.tx[2], 0x00);
	assert_int_equal(ctx.tx[3], 0xff);
	/* instantaneous: the transmitter is empty at once */
	assert_int_equal(rd(UART_LSR), UART_LSR_THRE | UART_LSR_TEMT);
	/* interrupts disabled: no IRQ */
	assert_int_equal(rd(UART_IIR), UART_IIR_NO_INT);
	assert_int_equal(ctx.irq_calls, 0);
	/* register index wraps at 8 */
	uart__write(&u, 8 + UART_THR, '!');
	assert_int_equal(ctx.ntx, 5);
	assert_int_equal(ctx.tx[4], '!');
}

static void test_transmit_without_callback(void **state)
{
	(void)state;
	uart__init(&u, NULL, NULL, NULL);
	wr(UART_IER, UART_IER_THRI);
	wr(UART_THR, 'x');
	assert_int_equal(rd(UART_IIR), UART_IIR_THRI);
	assert_int_equal(rd(UART_IIR), UART_IIR_NO_INT);
}

static void test_thr_empty_interrupt(void **state)
{
	(void)state;
	wr(UART_IER, UART_IER_THRI);
	/* enabling THRI with the THR empty raises the interrupt */
	assert_int_equal(ctx.irq_calls, 1);
	assert_int_equal(ctx.level, 1);
	assert_int_equal(u.irq_level, 1);
	/* reading IIR reports and acknowledges it */
	assert_int_equal(rd(UART_IIR), UART_IIR_THRI);
	assert_int_equal(ctx.irq_calls, 2);
	assert_int_equal(ctx.level, 0);
	assert_int_equal(rd(UART_IIR), UART_IIR_NO_INT);
	assert_int_equal(ctx.irq_calls, 2);
	/* a THR write re-arms it */
	wr(UART_THR, 'a');
	assert_int_equal(ctx.level, 1);
	assert_int_equal(ctx.irq_calls, 3);
	assert_int_equal(rd(UART_IIR), UART_IIR_THRI);
	assert_int_equal(ctx.level, 0);
	/* writing IER again with THRI still set does not re-raise */
	wr(UART_IER, UART_IER_THRI);
	assert_int_equal(rd(UART_IIR), UART_IIR_NO_INT);
	/* pending, then disabled: the line drops, and comes back when re-enabled */
	wr(UART_THR, 'b');
	assert_int_equal(ctx.level, 1);
	wr(UART_IER, 0);
	assert_int_equal(ctx.level, 0);
	assert_int_equal(rd(UART_IIR), UART_IIR_NO_INT);
	wr(UART_IER, UART_IER_THRI);
	assert_int_equal(ctx.level, 1);
	assert_int_equal(rd(UART_IIR), UART_IIR_THRI);
	assert_int_equal(ctx.level, 0);
	assert_int_equal(ctx.ntx, 2);
}

static void test_rx_fifo(void **state)
{
	const char *in = "0123456789abcdefXYZW";	/* 20 bytes */

	(void)state;
	wr(UART_FCR, UART_FCR_ENABLE);
	assert_int_equal(uart__rx_space(&u), UART_FIFO_SIZE);
	assert_int_equal(rd(UART_LSR) & UART_LSR_DR, 0);
	assert_int_equal(push(in), 16);
	assert_int_equal(uart__rx_space(&u), 0);
	assert_int_equal(push("!"), 0);
	assert_int_equal(rd(UART_LSR) & UART_LSR_OE, 0);	/* refused, not overrun */
	for (unsigned int i = 0; i < 16; i++) {
		assert_int_equal(rd(UART_LSR) & UART_LSR_DR, UART_LSR_DR);
		assert_int_equal(rd(UART_RBR), (uint8_t)in[i]);
		assert_int_equal(uart__rx_space(&u), i + 1);
	}
	assert_int_equal(rd(UART_LSR), UART_LSR_THRE | UART_LSR_TEMT);
	/* the ring wraps correctly */
	assert_int_equal(push("ab"), 2);
	assert_int_equal(rd(UART_RBR), 'a');
	assert_int_equal(push(in), 15);
	assert_int_equal(rd(UART_RBR), 'b');
	for (unsigned int i = 0; i < 15; i++)
		assert_int_equal(rd(UART_RBR), (uint8_t)in[i]);
	assert_int_equal(rd(UART_LSR) & UART_LSR_DR, 0);
}

static void test_rx_no_fifo(void **state)
{
	(void)state;
	assert_int_equal(uart__rx_space(&u), 1);
	assert_int_equal(push("abc"), 1);
	assert_int_equal(uart__rx_space(&u), 0);
	assert_int_equal(push("d"), 0);
	assert_int_equal(rd(UART_LSR), UART_LSR_THRE | UART_LSR_TEMT | UART_LSR_DR);
	assert_int_equal(rd(UART_RBR), 'a');
	assert_int_equal(rd(UART_LSR), UART_LSR_THRE | UART_LSR_TEMT);
	assert_int_equal(push("e"), 1);
	assert_int_equal(rd(UART_RBR), 'e');
	assert_int_equal(uart__rx_push(&u, NULL, 0), 0);
}

static void test_fcr_clear_rx(void **state)
{
	(void)state;
	wr(UART_FCR, UART_FCR_ENABLE);
	assert_int_equal(push("hello"), 5);
	wr(UART_FCR, UART_FCR_ENABLE | UART_FCR_CLR_RX);
	assert_int_equal(rd(UART_LSR) & UART_LSR_DR, 0);
	assert_int_equal(uart__rx_space(&u), 16);
	/* still in FIFO mode; CLR_RX is self-clearing */
	assert_int_equal(rd(UART_IIR), UART_IIR_FIFO | UART_IIR_NO_INT);
	assert_int_equal(push("xy"), 2);
	assert_int_equal(rd(UART_RBR), 'x');
	assert_int_equal(rd(UART_RBR), 'y');
	/* CLR_TX alone leaves the receiver alone */
	assert_int_equal(push("k"), 1);
	wr(UART_FCR, UART_FCR_ENABLE | UART_FCR_CLR_TX);
	assert_int_equal(rd(UART_RBR), 'k');
	/* switching the FIFO off empties it */
	assert_int_equal(push("abc"), 3);
	wr(UART_FCR, 0);
	assert_int_equal(rd(UART_LSR) & UART_LSR_DR, 0);
	assert_int_equal(uart__rx_space(&u), 1);
	/* and on again */
	assert_int_equal(push("q"), 1);
	wr(UART_FCR, UART_FCR_ENABLE);
	assert_int_equal(rd(UART_LSR) & UART_LSR_DR, 0);
}

static void test_iir_fifo_bits(void **state)
{
	(void)state;
	assert_int_equal(rd(UART_IIR), 0x01);
	wr(UART_FCR, UART_FCR_ENABLE);
	assert_int_equal(rd(UART_IIR), 0xc1);
	wr(UART_IER, UART_IER_THRI);
	assert_int_equal(rd(UART_IIR), 0xc2);
	assert_int_equal(rd(UART_IIR), 0xc1);
	wr(UART_FCR, 0);
	assert_int_equal(rd(UART_IIR), 0x01);
	/* FCR is write-only: offset 2 reads IIR */
	wr(UART_FCR, 0xc1);
	assert_int_equal(rd(UART_IIR) & 0xc0, 0xc0);
}

static void test_rdi_priority(void **state)
{
	(void)state;
	wr(UART_IER, UART_IER_RDI | UART_IER_THRI);
	assert_int_equal(ctx.level, 1);		/* THRI pending */
	assert_int_equal(push("r"), 1);
	assert_int_equal(rd(UART_IIR), UART_IIR_RDI);
	/* reporting RDI does not acknowledge the THRI behind it */
	assert_int_equal(rd(UART_IIR), UART_IIR_RDI);
	assert_int_equal(ctx.level, 1);
	assert_int_equal(rd(UART_RBR), 'r');
	assert_int_equal(ctx.level, 1);
	assert_int_equal(rd(UART_IIR), UART_IIR_THRI);
	assert_int_equal(ctx.level, 0);
	assert_int_equal(rd(UART_IIR), UART_IIR_NO_INT);
	/* RDI alone */
	assert_int_equal(push("s"), 1);
	assert_int_equal(ctx.level, 1);
	assert_int_equal(rd(UART_IIR), UART_IIR_RDI);
	assert_int_equal(rd(UART_RBR), 's');
	assert_int_equal(ctx.level, 0);
	assert_int_equal(rd(UART_IIR), UART_IIR_NO_INT);
	/* RDI disabled: data present but no interrupt */
	wr(UART_IER, 0);
	assert_int_equal(push("t"), 1);
	assert_int_equal(ctx.level, 0);
	assert_int_equal(rd(UART_IIR), UART_IIR_NO_INT);
	/* enabling it with data waiting raises it */
	wr(UART_IER, UART_IER_RDI);
	assert_int_equal(ctx.level, 1);
	assert_int_equal(rd(UART_IIR), UART_IIR_RDI);
}

static void test_trigger_levels(void **state)
{
	static const struct { uint8_t fcr; unsigned int trigger; } lv[] = {
		{ 0x01, 1 }, { 0x41, 4 }, { 0x81, 8 }, { 0xc1, 14 },
	};

	(void)state;
	for (unsigned int i = 0; i < 4; i++) {
		setup(NULL);
		wr(UART_IER, UART_IER_RDI);
		wr(UART_FCR, lv[i].fcr);
		for (unsigned int n = 1; n <= lv[i].trigger + 1; n++) {
			assert_int_equal(push("."), 1);
			/* below the trigger: character timeout; at or above: data available */
			assert_int_equal(rd(UART_IIR),
					 UART_IIR_FIFO | (n >= lv[i].trigger ? UART_IIR_RDI : UART_IIR_CTI));
			assert_int_equal(ctx.level, 1);
		}
		/* draining back below the trigger returns to timeout */
		for (unsigned int n = lv[i].trigger + 1; n > 1; n--) {
			rd(UART_RBR);
			assert_int_equal(rd(UART_IIR),
					 UART_IIR_FIFO | (n - 1 >= lv[i].trigger ? UART_IIR_RDI : UART_IIR_CTI));
		}
		rd(UART_RBR);
		assert_int_equal(rd(UART_IIR), UART_IIR_FIFO | UART_IIR_NO_INT);
		assert_int_equal(ctx.level, 0);
	}
	/* without a FIFO one byte is the trigger, and IIR has no FIFO bits */
	setup(NULL);
	wr(UART_IER, UART_IER_RDI);
	assert_int_equal(push("."), 1);
	assert_int_equal(rd(UART_IIR), UART_IIR_RDI);
}

static void test_loopback(void **state)
{
	(void)state;
	wr(UART_MCR, UART_MCR_LOOP);
	assert_int_equal(rd(UART_MCR), UART_MCR_LOOP);
	/* modem inputs follow outputs: none set */
	assert_int_equal(rd(UART_MSR) & 0xf0, 0);
	wr(UART_THR, 'L');
	assert_int_equal(ctx.ntx, 0);			/* not sent outside */
	assert_int_equal(rd(UART_LSR) & UART_LSR_DR, UART_LSR_DR);
	assert_int_equal(rd(UART_RBR), 'L');
	assert_int_equal(rd(UART_LSR) & UART_LSR_DR, 0);
	/* the outside cannot deliver while looped */
	assert_int_equal(push("x"), 0);
	assert_int_equal(rd(UART_LSR) & UART_LSR_DR, 0);
	/* each MCR output shows on its MSR input */
	static const struct { uint8_t mcr, msr; } map[] = {
		{ UART_MCR_RTS, UART_MSR_CTS },
		{ UART_MCR_DTR, UART_MSR_DSR },
		{ UART_MCR_OUT1, UART_MSR_RI },
		{ UART_MCR_OUT2, UART_MSR_DCD },
		{ 0x0f, 0xf0 },
		{ 0, 0 },
	};
	for (unsigned int i = 0; i < 6; i++) {
		wr(UART_MCR, UART_MCR_LOOP | map[i].mcr);
		assert_int_equal(rd(UART_MSR) & 0xf0, map[i].msr);
	}
	/* overrun: no FIFO, second byte is lost */
	wr(UART_THR, '1');
	wr(UART_THR, '2');
	assert_int_equal(rd(UART_LSR) & (UART_LSR_OE | UART_LSR_DR), UART_LSR_OE | UART_LSR_DR);
	assert_int_equal(rd(UART_LSR) & UART_LSR_OE, 0);	/* cleared by the read */
	assert_int_equal(rd(UART_RBR), '1');
	/* with the FIFO, 16 loop back */
	wr(UART_FCR, UART_FCR_ENABLE);
	for (unsigned int i = 0; i < 16; i++)
		wr(UART_THR, (uint8_t)('a' + i));
	assert_int_equal(rd(UART_LSR) & UART_LSR_OE, 0);
	for (unsigned int i = 0; i < 16; i++)
		assert_int_equal(rd(UART_RBR), 'a' + i);
	/* leaving loopback: inputs are the host's again and rx works */
	wr(UART_MCR, UART_MCR_DTR | UART_MCR_RTS | UART_MCR_OUT2);
	assert_int_equal(rd(UART_MSR) & 0xf0, UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS);
	assert_int_equal(push("o"), 1);
	assert_int_equal(rd(UART_RBR), 'o');
	wr(UART_THR, 'T');
	assert_int_equal(ctx.ntx, 1);
	assert_int_equal(ctx.tx[0], 'T');
}

static void test_msr_deltas(void **state)
{
	(void)state;
	/* entering loopback drops CTS, DSR, DCD: delta bits set */
	wr(UART_MCR, UART_MCR_LOOP);
	assert_int_equal(rd(UART_MSR), 0x0b);
	assert_int_equal(rd(UART_MSR), 0x00);	/* deltas cleared by reading */
	/* RI: rising edge no delta, trailing edge TERI */
	wr(UART_MCR, UART_MCR_LOOP | UART_MCR_OUT1);
	assert_int_equal(rd(UART_MSR), UART_MSR_RI);
	wr(UART_MCR, UART_MCR_LOOP);
	assert_int_equal(rd(UART_MSR), 0x04);
	/* modem status interrupt */
	wr(UART_IER, UART_IER_MSI);
	assert_int_equal(ctx.level, -1);
	wr(UART_MCR, UART_MCR_LOOP | UART_MCR_RTS);
	assert_int_equal(ctx.level, 1);
	assert_int_equal(rd(UART_IIR), UART_IIR_MSI);
	assert_int_equal(rd(UART_MSR), UART_MSR_CTS | 0x01);
	assert_int_equal(ctx.level, 0);
	assert_int_equal(rd(UART_IIR), UART_IIR_NO_INT);
}

static void test_line_status_interrupt(void **state)
{
	(void)state;
	wr(UART_IER, UART_IER_RLSI | UART_IER_RDI);
	wr(UART_MCR, UART_MCR_LOOP);
	wr(UART_THR, 'a');
	assert_int_equal(rd(UART_IIR), UART_IIR_RDI);
	wr(UART_THR, 'b');	/* overrun */
	assert_int_equal(rd(UART_IIR), UART_IIR_RLSI);	/* highest priority */
	assert_int_equal(rd(UART_LSR) & UART_LSR_OE, UART_LSR_OE);
	assert_int_equal(rd(UART_IIR), UART_IIR_RDI);
	assert_int_equal(rd(UART_RBR), 'a');
	assert_int_equal(rd(UART_IIR), UART_IIR_NO_INT);
	assert_int_equal(ctx.level, 0);
}

static void test_irq_only_on_change(void **state)
{
	(void)state;
	wr(UART_SCR, 1);
	wr(UART_LCR, 3);
	rd(UART_LSR);
	assert_int_equal(ctx.irq_calls, 0);
	wr(UART_IER, UART_IER_THRI | UART_IER_RDI);
	assert_int_equal(ctx.irq_calls, 1);
	assert_int_equal(ctx.level, 1);
	wr(UART_THR, 'a');		/* still pending: no new call */
	assert_int_equal(push("x"), 1);	/* RDI on top: level unchanged */
	rd(UART_LSR);
	assert_int_equal(ctx.irq_calls, 1);
	rd(UART_RBR);			/* RDI gone, THRI still pending */
	assert_int_equal(ctx.irq_calls, 1);
	rd(UART_IIR);			/* THRI acknowledged: line drops */
	assert_int_equal(ctx.irq_calls, 2);
	assert_int_equal(ctx.level, 0);
	rd(UART_IIR);
	rd(UART_IIR);
	rd(UART_LSR);
	assert_int_equal(ctx.irq_calls, 2);
	assert_int_equal(push("y"), 1);
	assert_int_equal(ctx.irq_calls, 3);
	assert_int_equal(ctx.level, 1);
	assert_int_equal(push("z"), 0);	/* refused, no change */
	assert_int_equal(ctx.irq_calls, 3);
	rd(UART_RBR);
	assert_int_equal(ctx.irq_calls, 4);
	assert_int_equal(ctx.level, 0);
}

static void test_scratch(void **state)
{
	(void)state;
	for (unsigned int v = 0; v < 256; v += 0x33) {
		wr(UART_SCR, (uint8_t)v);
		assert_int_equal(rd(UART_SCR), v);
	}
	wr(UART_SCR, 0xa5);
	wr(UART_LCR, 0x83);
	assert_int_equal(rd(UART_SCR), 0xa5);	/* not affected by DLAB */
	/* LSR and MSR are read-only */
	wr(UART_LCR, 0x03);
	wr(UART_LSR, 0);
	wr(UART_MSR, 0);
	assert_int_equal(rd(UART_LSR), UART_LSR_THRE | UART_LSR_TEMT);
	assert_int_equal(rd(UART_MSR), UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS);
	/* IER keeps only its four bits, MCR five */
	wr(UART_IER, 0xff);
	assert_int_equal(rd(UART_IER), 0x0f);
	wr(UART_MCR, 0xef);
	assert_int_equal(rd(UART_MCR), 0x0f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_reset_values, setup),
		cmocka_unit_test_setup(test_dlab, setup),
		cmocka_unit_test_setup(test_transmit, setup),
		cmocka_unit_test_setup(test_transmit_without_callback, setup),
		cmocka_unit_test_setup(test_thr_empty_interrupt, setup),
		cmocka_unit_test_setup(test_rx_fifo, setup),
		cmocka_unit_test_setup(test_rx_no_fifo, setup),
		cmocka_unit_test_setup(test_fcr_clear_rx, setup),
		cmocka_unit_test_setup(test_iir_fifo_bits, setup),
		cmocka_unit_test_setup(test_rdi_priority, setup),
		cmocka_unit_test_setup(test_trigger_levels, setup),
		cmocka_unit_test_setup(test_loopback, setup),
		cmocka_unit_test_setup(test_msr_deltas, setup),
		cmocka_unit_test_setup(test_line_status_interrupt, setup),
		cmocka_unit_test_setup(test_irq_only_on_change, setup),
		cmocka_unit_test_setup(test_scratch, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
