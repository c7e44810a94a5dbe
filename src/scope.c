/*
 * scope.c
 *		Scopes are "resource:action".  A granted scope g covers a required
 *		scope r iff (g.resource is "*" or equals r.resource) and (g.action is
 *		"*" or equals r.action).  A "*" on the required side is matched
 *		literally: requiring "documents:*" asks for a key that may do every
 *		action on documents, which only a "*" grant provides.
 */
#ifdef APIKEY_FRONTEND
#include "postgres_fe.h"
#else
#include "postgres.h"
#endif

#include "scope.h"

static inline bool
apikey_scope_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		c == '_' || c == '.' || c == '-';
}

/* One side of a scope: "*" or [a-z0-9_.-]+. */
bool
apikey_scope_part_valid(const char *s, size_t len)
{
	if (len == 1 && s[0] == '*')
		return true;
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++)
	{
		if (!apikey_scope_char_ok(s[i]))
			return false;
	}
	return true;
}

bool
apikey_scope_parse(const char *text, size_t len, ApikeyScope *out)
{
	const char *colon;

	if (len == 0 || len > APIKEY_MAX_SCOPE_LEN)
		return false;
	if (len == 1 && text[0] == '*')
	{
		out->resource = out->action = text;
		out->resource_len = out->action_len = 1;
		return true;
	}
	colon = memchr(text, ':', len);
	if (colon == NULL)
		return false;
	out->resource = text;
	out->resource_len = colon - text;
	out->action = colon + 1;
	out->action_len = len - out->resource_len - 1;
	return apikey_scope_part_valid(out->resource, out->resource_len) &&
		apikey_scope_part_valid(out->action, out->action_len);
}

static inline bool
apikey_scope_part_covers(const char *g, size_t glen, const char *r, size_t rlen)
{
	if (glen == 1 && g[0] == '*')
		return true;
	return glen == rlen && memcmp(g, r, glen) == 0;
}

bool
apikey_scope_covers(const ApikeyScope *granted, const ApikeyScope *required)
{
	return apikey_scope_part_covers(granted->resource, granted->resource_len,
									required->resource, required->resource_len) &&
		apikey_scope_part_covers(granted->action, granted->action_len,
								 required->action, required->action_len);
}

/* Order of resource, then action, bytewise; shorter first on a tie. */
static int
apikey_part_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int			c = memcmp(a, b, Min(alen, blen));

	if (c != 0)
		return c;
	return (alen > blen) - (alen < blen);
}

static int
apikey_scope_cmp(const void *pa, const void *pb)
{
	const ApikeyScope *a = pa;
	const ApikeyScope *b = pb;
	int			c = apikey_part_cmp(a->resource, a->resource_len, b->resource, b->resource_len);

	if (c != 0)
		return c;
	return apikey_part_cmp(a->action, a->action_len, b->action, b->action_len);
}

void
apikey_scope_set_sort(ApikeyScope *granted, size_t n)
{
	if (n > 1)
		qsort(granted, n, sizeof(ApikeyScope), apikey_scope_cmp);
}

static bool
apikey_scope_set_has(const ApikeyScope *sorted, size_t n, const char *res,
					 size_t res_len, const char *act, size_t act_len)
{
	ApikeyScope key;

	key.resource = res;
	key.resource_len = res_len;
	key.action = act;
	key.action_len = act_len;
	return bsearch(&key, sorted, n, sizeof(ApikeyScope), apikey_scope_cmp) != NULL;
}

/*
 * Does some scope of the sorted set cover required?  The grants that can:
 * exactly it, its resource with "*", "*" with its action, and "*:*".
 */
bool
apikey_scope_set_covers(const ApikeyScope *sorted, size_t n,
						const ApikeyScope *required)
{
	if (n == 0)
		return false;
	return apikey_scope_set_has(sorted, n, required->resource, required->resource_len,
								required->action, required->action_len) ||
		apikey_scope_set_has(sorted, n, required->resource, required->resource_len, "*", 1) ||
		apikey_scope_set_has(sorted, n, "*", 1, required->action, required->action_len) ||
		apikey_scope_set_has(sorted, n, "*", 1, "*", 1);
}
