# t/040_pg_upgrade.pl -- apikey through pg_upgrade from one PostgreSQL major
# to another (doc/apikey.md, "Upgrading PostgreSQL").
#
# The old cluster runs the installation named by APIKEY_UPGRADE_FROM (its
# prefix); the new one the installation on PATH.  scripts/test.sh runs this
# test on its PostgreSQL 18 target, upgrading from its PostgreSQL 15 source
# build (15.18, /var/cache/apikey-pg/15-asan/install), with the tree
# installed into both.  Not from Debian's binary package: its 15.20 stores
# an attribute option (pg_attver) on every column of every table, which
# PostgreSQL 18.6 (the newest Debian source) rejects, so pg_upgrade from
# it to 18.6 fails for any cluster, with or without apikey (see "Upgrading
# PostgreSQL" in doc/apikey.md).  Without APIKEY_UPGRADE_FROM the test has
# nothing to upgrade from and says so.
#
# In the old cluster: keys with scopes, an IP allowlist, metadata, one
# revoked, one rotated; verifications folded into usage_count and the hourly
# buckets; apikey_record calls; the audit trail; and more verifications left
# pending in shared memory, which a clean shutdown saves in
# pg_stat/apikey.stat.  Then the documented procedure: pg_upgrade --check,
# pg_upgrade, copy pg_stat/apikey.stat into the new cluster, start it.
#
# Passes when every token answers as before (scopes, allowlist, revocation,
# the rotated pair), the counts -- folded and pending -- arrive exactly,
# the audit trail and usage are intact, the extension's version and objects
# are those of the old cluster, and the workers fold new counts.
use strict;
use warnings;
use File::Copy;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $from = $ENV{APIKEY_UPGRADE_FROM};
plan skip_all => 'APIKEY_UPGRADE_FROM (the installation to upgrade from) is not set'
  unless defined $from && $from ne '';
die "APIKEY_UPGRADE_FROM=$from has no bin/pg_ctl" unless -x "$from/bin/pg_ctl";

my $conf = qq{
shared_preload_libraries = 'apikey'
apikey.flush_interval = '200ms'
apikey.fold_interval = '500ms'
log_line_prefix = '%m [%p] %b %q%a '
};

my $old = PostgreSQL::Test::Cluster->new('old', install_path => $from);
$old->init(extra => [ '--encoding=UTF8', '--locale=C' ]);
# the old cluster's workers off: the last counts stay pending in memory
$old->append_conf('postgresql.conf', $conf . "apikey.workers = off\n");
$old->start;
my $old_major = $old->safe_psql('postgres', 'SHOW server_version_num');

$old->safe_psql('postgres', 'CREATE DATABASE app');
$old->safe_psql('app', q{
	CREATE EXTENSION apikey;
	CREATE TABLE tok (name text PRIMARY KEY, key_id text, token text);
	INSERT INTO tok SELECT 'reader', k.* FROM apikey_create('org_u', 'reader', '{documents:read}',
		rate_limit => 0, metadata => '{"team": "search"}') k;
	INSERT INTO tok SELECT 'office', k.* FROM apikey_create('org_u', 'office', '{documents:*}',
		rate_limit => 0, allowed_ips => '{10.1.0.0/16}') k;
	INSERT INTO tok SELECT 'gone', k.* FROM apikey_create('org_u', 'gone', rate_limit => 0) k;
	SELECT apikey_revoke(key_id, 'left the company') FROM tok WHERE name = 'gone';
	INSERT INTO tok SELECT 'old', k.* FROM apikey_create('org_u', 'old', rate_limit => 0) k;
	INSERT INTO tok SELECT 'new', r.key_id, r.token
	  FROM tok t, apikey_rotate(t.key_id, '7 days') r WHERE t.name = 'old';
});

# Each token with the scopes it has and has not, and from an address in and
# out of office's allowlist.
my $matrix_query = q{
	SELECT string_agg(t.name || ':' || v.code, ' ' ORDER BY t.name, c.n)
	  FROM tok t,
	       LATERAL (VALUES (1, '{documents:read}'::text[], '10.1.2.3'::inet),
	                       (2, '{documents:write}', '10.1.2.3'),
	                       (3, '{}', '192.0.2.1')) AS c(n, scopes, ip),
	       LATERAL apikey_verify(t.token, c.scopes, c.ip) v};
my $matrix_before = $old->safe_psql('app', $matrix_query);
is($matrix_before,
	'gone:REVOKED gone:REVOKED gone:REVOKED '
	  . 'new:VALID new:VALID new:VALID '
	  . 'office:VALID office:VALID office:FORBIDDEN '
	  . 'old:VALID old:VALID old:VALID '
	  . 'reader:VALID reader:INSUFFICIENT_SCOPE reader:VALID',
	'old cluster: the tokens answer by their scopes, allowlist and revocation');

# 7 verifications of reader (and the matrix's) folded into the tables, 2
# apikey_record calls; then 5 more left pending in shared memory.
$old->safe_psql('app', q{
	SELECT count(*) FILTER (WHERE (apikey_verify(t.token, '{documents:read}')).valid)
	  FROM tok t, generate_series(1, 7) g WHERE t.name = 'reader';
	SELECT apikey_record(t.key_id, '/v1/docs', 200, 12.5) FROM tok t WHERE t.name = 'reader';
	SELECT apikey_record(t.key_id, '/v1/docs', 503, 40) FROM tok t WHERE t.name = 'reader';
	SELECT apikey_flush();
	SELECT count(*) FILTER (WHERE (apikey_verify(t.token, '{documents:read}')).valid)
	  FROM tok t, generate_series(1, 5) g WHERE t.name = 'reader';
});

# What must survive, read in the old cluster.
my $keys_query = q{
	SELECT t.name, k.org_id, k.scopes, k.allowed_ips, k.metadata, k.is_active,
	       k.revoked_reason, k.replaced_by IS NOT NULL AS replaced, k.usage_count
	  FROM tok t JOIN apikey_keys k USING (key_id) ORDER BY t.name};
my $usage_query = q{
	SELECT t.name, u.bucket, u.requests, u.denied, u.responses, u.response_ms,
	       u.client_errors, u.server_errors
	  FROM tok t JOIN apikey_usage u USING (key_id) ORDER BY t.name, u.bucket};
my $events_query = q{
	SELECT e.event_id, e.org_id, e.key_id, e.event, e.actor, e.details
	  FROM apikey_events e ORDER BY e.event_id};
my $objects_query = q{
	SELECT pg_describe_object(d.classid, d.objid, 0)
	  FROM pg_depend d JOIN pg_extension x ON d.refobjid = x.oid
	 WHERE d.refclassid = 'pg_extension'::regclass AND x.extname = 'apikey' AND d.deptype = 'e'
	   -- row types of tables and views, and array types, are the server's
	   -- business: PostgreSQL 18 records them as members, 15 does not
	   AND NOT EXISTS (SELECT FROM pg_type t LEFT JOIN pg_class c ON c.oid = t.typrelid
	                    WHERE d.classid = 'pg_type'::regclass AND t.oid = d.objid
	                      AND (t.typelem <> 0 OR c.relkind IN ('r', 'v')))
	 ORDER BY 1};
my %before = map { $_ => $old->safe_psql('app', $_) }
  ($keys_query, $usage_query, $events_query, $objects_query);
my $version = $old->safe_psql('app', q{SELECT extversion FROM pg_extension WHERE extname = 'apikey'});
like($before{$keys_query}, qr/^reader\|org_u\|\{documents:read\}\|\|\{"team": "search"\}\|t\|\|f\|9$/m,
	'old cluster: 2 + 7 verifications of reader folded into usage_count');
is($old->safe_psql('app', q{SELECT sum(requests) FROM apikey_pending_usage()}), '5',
	'old cluster: 5 verifications pending in shared memory');

# A clean shutdown saves the pending counts.
$old->stop('fast');
my $saved = $old->data_dir . '/pg_stat/apikey.stat';
ok(-s $saved, 'the clean shutdown saved pending counts in pg_stat/apikey.stat');

my $new = PostgreSQL::Test::Cluster->new('new');
# PostgreSQL 18's initdb turns data checksums on by default; pg_upgrade needs
# the old cluster's setting (off, as initdb before 18 made it).
my @checksums = $new->pg_version >= 18 ? ('--no-data-checksums') : ();
$new->init(extra => [ '--encoding=UTF8', '--locale=C', @checksums ]);
$new->append_conf('postgresql.conf', $conf);
my $new_major = $new->pg_version->major;
note "upgrading from $from (server_version_num $old_major) to PostgreSQL $new_major";

my @upgrade = (
	'pg_upgrade', '--no-sync',
	'--old-datadir', $old->data_dir, '--new-datadir', $new->data_dir,
	'--old-bindir', $old->config_data('--bindir'), '--new-bindir', $new->config_data('--bindir'),
	'--socketdir', $new->host,
	'--old-port', $old->port, '--new-port', $new->port,
	'--copy');
command_ok([ @upgrade, '--check' ], 'pg_upgrade --check accepts the cluster with apikey');
ok(PostgreSQL::Test::Utils::run_log(\@upgrade), 'pg_upgrade')
  or BAIL_OUT('pg_upgrade failed: see its log above');
copy($saved, $new->data_dir . '/pg_stat/apikey.stat')
  or die "copying $saved: $!";

$new->start;
is($new->safe_psql('app', q{SELECT extversion FROM pg_extension WHERE extname = 'apikey'}),
	$version, "the extension's version is carried over ($version)");
is($new->safe_psql('app', $objects_query), $before{$objects_query},
	"the extension's objects are the same");

# Every token answers as it did.
is($new->safe_psql('app', $matrix_query), $matrix_before,
	'every token verifies as before: scopes, allowlist, revocation, the rotated pair in its grace period');

# The saved pending counts arrived with the copied file; everything folded
# before the upgrade is in the tables.  Each key's count: what was folded,
# what was pending, and the VALID answers of the matrix just run.
$new->safe_psql('app', 'SELECT apikey_flush()');
my %matrix_valid = (gone => 0, new => 3, office => 2, old => 3, reader => 2);
my %pending = (reader => 5);
my $expected_keys = join("\n", map {
	my @f = split /\|/, $_, -1;
	$f[-1] += $matrix_valid{ $f[0] } + ($pending{ $f[0] } // 0);
	join('|', @f)
} split /\n/, $before{$keys_query});
is($new->safe_psql('app', $keys_query), $expected_keys,
	'every key as it was; counts exact: folded, pending (from pg_stat/apikey.stat) and new');
like($expected_keys, qr/^reader\|.*\|16$/m, '... reader: 9 folded + 5 pending + 2 new');
is($new->safe_psql('app', $events_query), $before{$events_query},
	'the audit trail is the same');
my $after_usage = $new->safe_psql('app', q{
	SELECT t.name, u.client_errors, u.server_errors, u.responses, u.response_ms
	  FROM tok t JOIN apikey_usage u USING (key_id) WHERE u.responses > 0 ORDER BY 1});
is($after_usage, 'reader|0|1|2|52.5', 'the recorded responses are in the hourly buckets');

# The workers run in the new cluster: a verification reaches the table
# without apikey_flush().
my $reader_count = q{SELECT k.usage_count FROM tok t JOIN apikey_keys k USING (key_id) WHERE t.name = 'reader'};
my $reader_before = $new->safe_psql('app', $reader_count);
is($new->safe_psql('app', q{
	SELECT (apikey_verify(t.token)).code FROM tok t WHERE t.name = 'reader'}), 'VALID',
	'a new verification');
ok($new->poll_query_until('app', "SELECT ($reader_count) = $reader_before + 1"),
	'the workers fold new counts in the new cluster')
  or diag($new->safe_psql('postgres', q{SELECT backend_type, datname, state, wait_event, query FROM pg_stat_activity}));

# The extension can still be updated and dropped as usual.
$new->safe_psql('app', 'ALTER EXTENSION apikey UPDATE');
is($new->safe_psql('app', q{SELECT extversion FROM pg_extension WHERE extname = 'apikey'}),
	$version, 'ALTER EXTENSION apikey UPDATE finds nothing to do');

my $log = slurp_file($new->logfile);
unlike($log, qr/terminated by signal|\bPANIC:|\bTRAP:/, 'nothing crashed');
$new->stop;
done_testing();
