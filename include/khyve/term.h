/* The host terminal: raw mode for the guest console, restored on every exit. */
#ifndef KHYVE_TERM_H
#define KHYVE_TERM_H

#include <stdbool.h>

/* Put stdin in raw mode if it is a terminal.  Returns true if it did. */
bool term__raw(void);
/* Restore the saved mode; async-signal-safe and idempotent. */
void term__restore(void);

#endif
