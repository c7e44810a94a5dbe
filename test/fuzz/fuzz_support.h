/*
 * fuzz_support.h
 *		Shared by the fuzz harnesses: see fuzz_support.c.
 */
#ifndef APIKEY_FUZZ_SUPPORT_H
#define APIKEY_FUZZ_SUPPORT_H

/* Check the CRC table; call once from LLVMFuzzerInitialize. */
extern void fuzz_support_init(void);

/*
 * Make pg_strong_random return the bytes of buf, then a splitmix64 stream
 * seeded with seed; or fail (return false) when fail is set.
 */
extern void fuzz_random_set(const uint8 *buf, size_t len, uint64 seed, bool fail);
extern size_t fuzz_random_calls(void);

/*
 * Failure reports.  fuzz_set_input() names the harness and the input being
 * run (call it first in LLVMFuzzerTestOneInput); dump() collects context,
 * fail() prints the headline, the context and the whole input, and aborts
 * (libFuzzer then saves the input); dump_flush() prints the context
 * collected so far (for tracing).
 */
extern void fuzz_set_input(const char *harness, const uint8_t *data, size_t size);
extern void dump(const char *what, const void *p, size_t n);
extern void dump_flush(void);
extern void fail(const char *fmt,...) pg_attribute_printf(1, 2) pg_attribute_noreturn();

/* An exactly sized heap copy, so that ASan sees any access past n. */
extern char *exact_copy(const void *p, size_t n);

#endif							/* APIKEY_FUZZ_SUPPORT_H */
