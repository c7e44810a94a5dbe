/*
 * compat.h
 *		Differences between the PostgreSQL majors apikey builds on (15 to 18),
 *		in one place, as pgvector and Citus do: the rest of the code is
 *		written against the newest API and includes this header after
 *		postgres.h.
 */
#ifndef APIKEY_COMPAT_H
#define APIKEY_COMPAT_H

#if PG_VERSION_NUM < 150000
#error "apikey needs PostgreSQL 15 or newer"
#endif

/* 16 moved the varlena macros (SET_VARSIZE, VARDATA_ANY ...) to varatt.h. */
#if PG_VERSION_NUM >= 160000
#include "varatt.h"
#endif

/*
 * 16 split object privilege checks by catalog (object_aclcheck); 15 has one
 * function per object kind.
 */
#if PG_VERSION_NUM >= 160000
#define apikey_namespace_aclcheck(nspid, roleid, mode) \
	object_aclcheck(NamespaceRelationId, (nspid), (roleid), (mode))
#else
#define apikey_namespace_aclcheck(nspid, roleid, mode) \
	pg_namespace_aclcheck((nspid), (roleid), (mode))
#endif

/*
 * 17 gave dshash_parameters a copy function (dshash_memcpy for plain keys);
 * the initializer below fills it where it exists.
 */
#if PG_VERSION_NUM >= 170000
#define APIKEY_DSHASH_COPY_FUNCTION , dshash_memcpy
#else
#define APIKEY_DSHASH_COPY_FUNCTION
#endif

/* 17 renamed the size accounting of a DSA area. */
#if PG_VERSION_NUM >= 170000
#define APIKEY_HAVE_DSA_GET_TOTAL_SIZE 1
#endif

/*
 * 17 renamed pgprocno to a ProcNumber; both index ProcGlobal->allProcs.
 */
#if PG_VERSION_NUM >= 170000
#define apikey_my_procno()	MyProcNumber
#else
#define apikey_my_procno()	(MyProc->pgprocno)
#endif

/* 18 gave index_beginscan an instrumentation argument. */
#if PG_VERSION_NUM >= 180000
#define apikey_index_beginscan(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), NULL, (nkeys), (norderbys))
#else
#define apikey_index_beginscan(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), (nkeys), (norderbys))
#endif

/* 16 renamed the accessor of pg_stat_activity's local snapshot (1-based). */
#if PG_VERSION_NUM >= 160000
#define apikey_local_beentry(i)	pgstat_get_local_beentry_by_index(i)
#else
#define apikey_local_beentry(i)	pgstat_fetch_stat_local_beentry(i)
#endif

#endif							/* APIKEY_COMPAT_H */
