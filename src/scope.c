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
