/*
 * keys.h
 *		Token minting and scope validation for SQL (keys.c).
 */
#ifndef APIKEY_KEYS_H
#define APIKEY_KEYS_H

#include <stddef.h>

extern char *apikey_echo(const char *s, size_t len);

#endif							/* APIKEY_KEYS_H */
