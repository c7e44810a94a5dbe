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

#endif							/* APIKEY_FUZZ_SUPPORT_H */
