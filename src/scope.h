/*
 * scope.h
 *		Scope parsing and matching.  Pure functions over (pointer, length)
 *		slices: no allocation, no catalog access; unit-tested outside the
 *		server.
 */
#ifndef APIKEY_SCOPE_H
#define APIKEY_SCOPE_H

#include <stddef.h>

/* A scope longer than this is rejected as invalid. */
#define APIKEY_MAX_SCOPE_LEN	255
/* Scopes a key may hold, and a verification may require. */
#define APIKEY_MAX_SCOPES		1000

/* "resource:action", each side [a-z0-9_.-]+ or "*"; a bare "*" is "*:*". */
typedef struct ApikeyScope
{
	const char *resource;
	size_t		resource_len;
	const char *action;
	size_t		action_len;
} ApikeyScope;

extern bool apikey_scope_parse(const char *text, size_t len, ApikeyScope *out);
extern bool apikey_scope_covers(const ApikeyScope *granted,
								const ApikeyScope *required);
extern bool apikey_scope_part_valid(const char *s, size_t len);

/*
 * Many against many without quadratic work: sort the granted scopes once,
 * then each required scope costs four binary searches.
 */
extern void apikey_scope_set_sort(ApikeyScope *granted, size_t n);
extern bool apikey_scope_set_covers(const ApikeyScope *sorted, size_t n,
									const ApikeyScope *required);

#endif							/* APIKEY_SCOPE_H */
