/*
 * apikey_bench_noop.c
 *		Row 0b of bench/run.sh: a C function with apikey_verify's arguments
 *		and result that answers MALFORMED and does nothing else.  Not part of
 *		the extension.
 *
 *		Row 0 (fetching the token) against this row is what PostgreSQL itself
 *		spends on calling a function in FROM and returning its 12-column
 *		row; this row against row 4 (apikey_verify of a malformed token) is
 *		what apikey's own path for a malformed token costs.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/typcache.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(apikey_bench_noop);

Datum
apikey_bench_noop(PG_FUNCTION_ARGS)
{
	/* the type cache, as apikey_verify uses: no descriptor copied per call */
	TupleDesc	tupdesc = lookup_rowtype_tupdesc(get_fn_expr_rettype(fcinfo->flinfo), -1);
	Datum		values[12] = {0};
	bool		nulls[12];
	Datum		result;

	memset(nulls, true, sizeof(nulls));
	values[0] = BoolGetDatum(false);
	nulls[0] = false;
	values[1] = CStringGetTextDatum("MALFORMED");
	nulls[1] = false;
	result = HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));
	ReleaseTupleDesc(tupdesc);
	PG_RETURN_DATUM(result);
}
