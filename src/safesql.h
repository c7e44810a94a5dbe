/*
 * safesql.h
 *		Running SQL from C without letting anyone's search_path in, and the
 *		check that the extension's schema is not writable by others.
 */
#ifndef APIKEY_SAFESQL_H
#define APIKEY_SAFESQL_H

extern int	apikey_safesql_begin(void);
extern void apikey_safesql_bulk_settings(void);
extern void apikey_safesql_end(int nestlevel);
extern char *apikey_qualified(Oid nspid, const char *relname);
extern bool apikey_schema_unsafe(Oid nspid, char **who);
extern bool apikey_relation_exists(Oid nspid, const char *relname);
extern Oid	apikey_extension_schema(void);

#endif							/* APIKEY_SAFESQL_H */
