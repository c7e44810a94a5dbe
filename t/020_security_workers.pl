# t/020_security_workers.pl -- the workers run nothing a user planted.
#
# The workers sweep, flush and fold as the bootstrap superuser.  In 2.0 a
# role that could create objects in the extension's schema planted
# jsonb_build_object(text, timestamptz) there, and the sweep's audit trigger
# ran it as superuser when a key expired (issue 14, attack 2).  Now:
#   * while the schema is writable by others, the workers skip the database
#     with a WARNING that says how to fix it, and run no SQL there;
#   * once it is fixed, the objects planted while it was writable are still
#     there, and the workers' sweep (expiring a key: the audit trigger),
#     flush and fold run none of them;
#   * a schema whose owner is not a superuser is refused at CREATE
#     EXTENSION, or nothing planted there runs either.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

$PostgreSQL::Test::Utils::timeout_default = 60
  if $PostgreSQL::Test::Utils::timeout_default > 60;

my $node = PostgreSQL::Test::Cluster->new('security_workers');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'apikey'
apikey.flush_interval = '200ms'
apikey.fold_interval = '500ms'
apikey.sweep_interval = '1s'
log_line_prefix = '%m [%p] %b %q%a '
});
$node->start;
$node->safe_psql('postgres', 'CREATE ROLE regress_sec_mallory LOGIN');

# The trap: overloads in schema NSP that win over pg_catalog's if anything
# resolves them through the schema, each recording the role it runs as and
# trying to make mallory superuser.
my $plant = <<'EOSQL';
CREATE FUNCTION NSP.regress_sec_evil(via pg_catalog.text) RETURNS pg_catalog.bool
    LANGUAGE plpgsql AS $b$
BEGIN
    BEGIN
        EXECUTE 'ALTER ROLE regress_sec_mallory SUPERUSER';
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    INSERT INTO regress_sec_trap.ran VALUES (via, current_user);
    RETURN true;
END $b$;
CREATE FUNCTION NSP.jsonb_build_object(pg_catalog.text, pg_catalog.timestamptz)
    RETURNS pg_catalog.jsonb LANGUAGE plpgsql
    AS $b$ BEGIN PERFORM NSP.regress_sec_evil('jsonb_build_object(text, timestamptz)'); RETURN '{}'; END $b$;
CREATE FUNCTION NSP.jsonb_build_object(pg_catalog.text, pg_catalog.text)
    RETURNS pg_catalog.jsonb LANGUAGE plpgsql
    AS $b$ BEGIN PERFORM NSP.regress_sec_evil('jsonb_build_object(text, text)'); RETURN '{}'; END $b$;
CREATE FUNCTION NSP.unnest(pg_catalog.text[]) RETURNS SETOF pg_catalog.text LANGUAGE plpgsql
    AS $b$ BEGIN PERFORM NSP.regress_sec_evil('unnest(text[])'); END $b$;
CREATE FUNCTION NSP.now() RETURNS pg_catalog.timestamptz LANGUAGE plpgsql
    AS $b$ BEGIN PERFORM NSP.regress_sec_evil('now()'); RETURN pg_catalog.now(); END $b$;
CREATE FUNCTION NSP.regress_sec_eq(pg_catalog.text, pg_catalog.text) RETURNS pg_catalog.bool
    LANGUAGE plpgsql
    AS $b$ BEGIN PERFORM NSP.regress_sec_evil('=(text, text)'); RETURN $1 OPERATOR(pg_catalog.=) $2; END $b$;
CREATE OPERATOR NSP.= (FUNCTION = NSP.regress_sec_eq, LEFTARG = pg_catalog.text, RIGHTARG = pg_catalog.text);
CREATE FUNCTION NSP.regress_sec_sum_sf(pg_catalog.int8, pg_catalog.int8) RETURNS pg_catalog.int8
    LANGUAGE plpgsql
    AS $b$ BEGIN PERFORM NSP.regress_sec_evil('sum(int8)'); RETURN 0; END $b$;
CREATE AGGREGATE NSP.sum(pg_catalog.int8) (SFUNC = NSP.regress_sec_sum_sf, STYPE = pg_catalog.int8);
EOSQL

sub prepare_trap
{
	my ($db) = @_;
	$node->safe_psql($db, q{
		CREATE SCHEMA regress_sec_trap;
		GRANT USAGE ON SCHEMA regress_sec_trap TO PUBLIC;
		CREATE TABLE regress_sec_trap.ran (via text, ran_as name);
		GRANT INSERT ON regress_sec_trap.ran TO PUBLIC;
	});
}

sub plant
{
	my ($db, $nsp) = @_;
	(my $sql = $plant) =~ s/NSP/$nsp/g;
	$node->safe_psql($db, $sql, extra_params => [ '-U', 'regress_sec_mallory' ]);
}

sub ran_as_others
{
	my ($db) = @_;
	return $node->safe_psql($db,
		q{SELECT coalesce(string_agg(DISTINCT via || ' as ' || ran_as, ', '), '')
		    FROM regress_sec_trap.ran WHERE ran_as <> 'regress_sec_mallory'});
}

sub mallory_is_superuser
{
	return $node->safe_psql('postgres',
		q{SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_sec_mallory'});
}

# ---- a schema made writable by PUBLIC: the workers stay out ----------------------
$node->safe_psql('postgres', 'CREATE DATABASE a');
prepare_trap('a');
$node->safe_psql('a', q{
	CREATE SCHEMA shared;
	CREATE EXTENSION apikey SCHEMA shared;
	GRANT USAGE, CREATE ON SCHEMA shared TO PUBLIC;
});
plant('a', 'shared');
my $k = $node->safe_psql('a', q{
	SELECT key_id FROM shared.apikey_create('acme'::text, 'expiring'::text,
	                                        expires_at => now() + interval '1 second')});
my $t = $node->safe_psql('a', q{
	SELECT token FROM shared.apikey_create('acme'::text, 'used'::text)});
$node->safe_psql('a', "SELECT shared.apikey_verify('$t'::text) FROM generate_series(1, 3)");

my $log_offset = 0;
ok( $node->wait_for_log(
		qr/WARNING:  apikey worker skips database "a": schema "shared" of the extension is writable by PUBLIC/,
		$log_offset),
	'the workers skip a database whose apikey schema PUBLIC may write to');
like(slurp_file($node->logfile),
	qr/HINT:  REVOKE CREATE ON SCHEMA shared FROM PUBLIC;/, '... and say how to fix it');
sleep(3);    # three sweep intervals
is($node->safe_psql('a', "SELECT is_active FROM shared.apikey_keys WHERE key_id = '$k'"),
	't', '... and do not sweep it');
is(ran_as_others('a'), '', '... so nothing planted ran');

# ---- fixed: the planted objects stay, and run for no one -----------------------
$node->safe_psql('a', 'REVOKE CREATE ON SCHEMA shared FROM PUBLIC');
ok( $node->poll_query_until('a',
		"SELECT NOT is_active FROM shared.apikey_keys WHERE key_id = '$k'"),
	'once the schema is fixed, the workers sweep the expired key');
ok( $node->poll_query_until('a',
		"SELECT count(*) = 1 FROM shared.apikey_events WHERE key_id = '$k' AND event = 'expired'"),
	'... audited as expired');
ok( $node->poll_query_until('a',
		"SELECT sum(usage_count) = 3 FROM shared.apikey_keys"),
	'... and flush and fold the counts');
is(ran_as_others('a'), '',
	'the planted overloads ran as no one: sweep, audit trigger, flush and fold are qualified');
is(mallory_is_superuser(), 'f', 'mallory is not superuser');

# ---- a schema owned by mallory -------------------------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE b');
prepare_trap('b');
$node->safe_psql('b', 'CREATE SCHEMA owned AUTHORIZATION regress_sec_mallory');
my ($ret, $stdout, $stderr) = $node->psql('b', 'CREATE EXTENSION apikey SCHEMA owned');
note("CREATE EXTENSION apikey SCHEMA owned: " . ($ret == 0 ? 'installed' : $stderr));
plant('b', 'owned');
if ($ret == 0)
{
	my $kb = $node->safe_psql('b', q{
		SELECT key_id FROM owned.apikey_create('acme'::text, 'expiring'::text,
		                                       expires_at => now() + interval '1 second')});
	my $tb = $node->safe_psql('b', q{SELECT token FROM owned.apikey_create('acme'::text, 'used'::text)});
	$node->safe_psql('b', "SELECT owned.apikey_verify('$tb'::text) FROM generate_series(1, 3)");
	ok( $node->poll_query_until('b',
			"SELECT count(*) = 1 FROM owned.apikey_events WHERE key_id = '$kb' AND event = 'expired'"),
		'in a schema owned by a non-superuser, the workers sweep ...');
	ok($node->poll_query_until('b', "SELECT sum(usage_count) = 3 FROM owned.apikey_keys"),
		'... and fold');
}
else
{
	like($stderr, qr/cannot install/, 'a schema owned by a non-superuser is refused');
}
is(ran_as_others('b'), '', 'nothing mallory planted in the schema it owns ran as another role');
is(mallory_is_superuser(), 'f', 'mallory is not superuser');

# ---- no errors from the workers ------------------------------------------------
unlike(slurp_file($node->logfile), qr/(ERROR|FATAL|PANIC):.*(apikey|regress_sec)/,
	'no worker errors in the log');

$node->stop;
done_testing();
