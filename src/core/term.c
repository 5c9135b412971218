#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "khyve/term.h"

static struct termios saved;
static volatile sig_atomic_t is_raw;

void term__restore(void)
{
	if (is_raw) {
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
		is_raw = 0;
	}
}

/* A crash must not leave the user's terminal raw. */
static void term__fatal(int sig)
{
	term__restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

bool term__raw(void)
{
	static const int fatal[] = { SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL };
	struct termios t;

	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved) < 0)
		return false;
	t = saved;
	cfmakeraw(&t);
	t.c_oflag |= OPOST;	/* keep "\n" -> "\r\n" for guests that print bare newlines */
	if (tcsetattr(STDIN_FILENO, TCSANOW, &t) < 0)
		return false;
	is_raw = 1;
	atexit(term__restore);
	for (unsigned int i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++) {
		struct sigaction sa = { .sa_handler = term__fatal, .sa_flags = SA_RESETHAND };

		sigemptyset(&sa.sa_mask);
		sigaction(fatal[i], &sa, NULL);
	}
	return true;
}
