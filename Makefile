# apikey — PGXS build.  `make && make install`, then see scripts/test.sh.
EXTENSION  = apikey
MODULE_big = apikey
# Layers point down: pure parts (token, scope, ratewindow); shared-memory
# owners (area, ratelimit, pending, failures, launcher_state); the SQL-facing
# parts (catalog, safesql, visibility, verify, flush, usage, definer, keys);
# the workers; apikey.c.
OBJS = apikey.o \
       src/token.o src/scope.o src/ratewindow.o \
       src/area.o src/ratelimit.o src/pending.o src/failures.o src/launcher_state.o \
       src/dump.o src/catalog.o src/safesql.o src/visibility.o \
       src/verify.o src/flush.o src/usage.o src/definer.o src/keys.o src/tenants.o src/metrics.o \
       src/worker.o
# Released scripts are frozen files (test: sql/released_scripts.sql); every
# change to SQL objects is a new version with its own update script.
DATA = apikey--1.0.sql apikey--2.0.sql apikey--1.0--2.0.sql apikey--2.0--1.0.sql \
       apikey--1.0--1.1.sql apikey--2.0--2.1.sql apikey--1.1--2.1.sql apikey--2.1--1.1.sql \
       apikey--2.1--2.2.sql apikey--2.2--2.1.sql
DOCS = doc/apikey.md

# pg_regress files (one per concern) and isolation specs, discovered by name.
REGRESS   = $(sort $(patsubst sql/%.sql,%,$(wildcard sql/*.sql)))
ISOLATION = $(sort $(patsubst specs/%.spec,%,$(wildcard specs/*.spec)))
TAP_TESTS = 1
# Both run against a temporary instance with the library preloaded.
REGRESS_OPTS   = --temp-config=$(srcdir)/test/preload.conf
ISOLATION_OPTS = --temp-config=$(srcdir)/test/preload.conf

PG_CPPFLAGS = -I$(srcdir)/src
# -Wextra minus the warnings PostgreSQL's own headers and fmgr signatures trip.
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-sign-compare \
            -Wno-missing-field-initializers -Wno-clobbered

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks header dependencies only for servers built with --enable-depend
# (Debian's is not): every object depends on every header of ours, so that an
# incremental build never links objects made with an older layout.
$(OBJS) $(OBJS:.o=.bc): $(wildcard $(srcdir)/src/*.h)

# Unit tests of the pure C parts (token format, scopes), outside the server.
UNIT_CFLAGS = -O1 -g -Wall -Wextra -Werror -Wno-unused-parameter -Wno-sign-compare \
              -I$(srcdir)/src -I$(shell $(PG_CONFIG) --includedir-server)
UNIT_SRCS = src/token.c src/scope.c src/ratewindow.c
test/unit/run_unit: test/unit/run_unit.c test/unit/crc_table.c $(UNIT_SRCS) src/token.h src/scope.h src/ratewindow.h
	$(CC) $(UNIT_CFLAGS) -DAPIKEY_FRONTEND -o $@ test/unit/run_unit.c test/unit/crc_table.c \
		$(UNIT_SRCS) -L$(shell $(PG_CONFIG) --pkglibdir) -lpgcommon -lpgport -lcrypto -lm

unittest: test/unit/run_unit
	test/unit/run_unit

.PHONY: unittest
EXTRA_CLEAN = test/unit/run_unit

# The PGXN archive apikey-<version>.zip (scripts/dist.sh checks META.json
# against the PGXN meta spec first).
dist:
	bash $(srcdir)/scripts/dist.sh

.PHONY: dist
