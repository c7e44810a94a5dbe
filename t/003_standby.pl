# t/003_standby.pl -- a primary and a streaming hot standby, both preloading
# apikey.
#
#   * on the standby apikey_verify reads the replicated keys: VALID for a
#     valid token, REVOKED as soon as the primary's revoke has replayed,
#     RATE_LIMITED by the standby's own window;
#   * the standby counts into its own shared memory (its apikey_stats), never
#     into the primary's; apikey_flush() there is a clear read-only error;
#   * no apikey worker or launcher runs during recovery, and the standby's log
#     has no errors from apikey;
#   * after promotion the launcher starts and the counts pending on the
#     former standby are flushed into its tables.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

$PostgreSQL::Test::Utils::timeout_default = 60
  if $PostgreSQL::Test::Utils::timeout_default > 60;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'apikey'
apikey.flush_interval = '500ms'
apikey.sweep_interval = '2s'
log_line_prefix = '%m [%p] %b %q%a '
});
$primary->start;
$primary->safe_psql('postgres', 'CREATE EXTENSION apikey');
my ($k1, $t1) = split /\|/, $primary->safe_psql('postgres',
	"SELECT key_id, token FROM apikey_create('org_p', 'replicated', rate_limit => 0)");
my ($k2, $t2) = split /\|/, $primary->safe_psql('postgres', qq{
	SET apikey.default_rate_window = '31d';
	SELECT key_id, token FROM apikey_create('org_p', 'limited', rate_limit => 2)});

$primary->backup('bkp');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'bkp', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'),
	't', 'the standby is in recovery');
is($standby->safe_psql('postgres', 'SHOW shared_preload_libraries'),
	'apikey', 'the standby preloads apikey');

# No worker during recovery.
sub apikey_backends
{
	my ($node) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT count(*) FROM pg_stat_activity
		 WHERE backend_type IN ('apikey launcher', 'apikey worker')});
}
is(apikey_backends($standby), '0', 'no apikey launcher or worker runs on the standby');

# ---- verification on the standby ---------------------------------------------

my $r = $standby->safe_psql('postgres',
	"SELECT valid, code, key_id = '$k1', org_id, name FROM apikey_verify('$t1')");
is($r, 't|VALID|t|org_p|replicated', 'a valid token verifies VALID on the standby');
is($standby->safe_psql('postgres', qq{
		SELECT string_agg(code, ',') FROM (SELECT (apikey_verify('$t1')).code
		                                     FROM generate_series(1, 3)) s}),
	'VALID,VALID,VALID', 'three more VALID on the standby');
is($standby->safe_psql('postgres', "SELECT (apikey_verify('ak_live_bogus')).code"),
	'MALFORMED', 'a malformed token is MALFORMED on the standby');

# The standby's own rate-limit window.
is($standby->safe_psql('postgres', qq{
		SELECT string_agg(code, ',') FROM (SELECT (apikey_verify('$t2')).code
		                                     FROM generate_series(1, 3)) s}),
	'VALID,VALID,RATE_LIMITED', 'the rate limit is enforced on the standby');

# Counts stay in the standby's shared memory.
is($standby->safe_psql('postgres',
		"SELECT requests || '/' || denied FROM apikey_stats WHERE key_id = '$k1'"),
	'4/0', "the standby's apikey_stats shows its own 4 requests");
is($primary->safe_psql('postgres',
		"SELECT count(*) FROM apikey_stats WHERE key_id = '$k1'"),
	'0', "... which are not in the primary's apikey_stats");

# apikey_flush() on the standby: a clear error, nothing lost.
my ($ret, $out, $err) = $standby->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT apikey_flush()");
isnt($ret, 0, 'apikey_flush() fails on the standby');
like($err, qr/ERROR:  25006: cannot flush apikey counters during recovery/,
	'... with a read-only transaction error (25006) that says why');
like($err, qr/HINT:  /, '... and a hint');
is($standby->safe_psql('postgres',
		"SELECT requests FROM apikey_stats WHERE key_id = '$k1'"),
	'4', '... and the counts are still pending on the standby');

# ---- revocation replays -------------------------------------------------------

$primary->safe_psql('postgres', "SELECT apikey_revoke('$k1', 'leaked')");
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', "SELECT (apikey_verify('$t1')).code"),
	'REVOKED', 'after the primary revokes and the standby catches up: REVOKED');
is($primary->safe_psql('postgres', "SELECT (apikey_verify('$t1')).code"),
	'REVOKED', '... as on the primary');

# Usage on the standby never reached the primary's tables.
$primary->poll_query_until('postgres', 'SELECT count(*) = 0 FROM apikey_stats WHERE requests > 0')
  or die;
is($primary->safe_psql('postgres',
		"SELECT usage_count FROM apikey_keys WHERE key_id = '$k1'"),
	'0', "the standby's verifications are not in the primary's usage_count");

is(apikey_backends($standby), '0', 'still no apikey launcher or worker on the standby');

# ---- the standby's log --------------------------------------------------------

my @lines = grep { /(ERROR|FATAL|PANIC):/ && !/cannot flush apikey counters during recovery/ }
  split /\n/, slurp_file($standby->logfile);
is(scalar(@lines), 0, "the standby's log has no errors besides the deliberate apikey_flush()")
  or diag(join("\n", @lines));

# ---- promotion ----------------------------------------------------------------

$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()') or die;
ok($standby->poll_query_until('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'apikey launcher'", '1'),
	'after promotion the launcher starts');
# The 4 VALID of the revoked key plus 2 VALID of the limited one were pending.
ok($standby->poll_query_until('postgres',
		"SELECT usage_count FROM apikey_keys WHERE key_id = '$k1'", '4'),
	'... and flushes the counts that were pending on the standby');
is($standby->safe_psql('postgres',
		"SELECT usage_count FROM apikey_keys WHERE key_id = '$k2'"),
	'2', '... for every key');
is($standby->safe_psql('postgres', "SELECT (apikey_verify('$t1')).code"),
	'REVOKED', 'the promoted server still knows the key is revoked');

my @plines = grep { /apikey (worker|launcher) .*(ERROR|PANIC):/ }
  split /\n/, slurp_file($primary->logfile) . slurp_file($standby->logfile);
is(scalar(@plines), 0, 'no ERROR from the apikey workers on either server')
  or diag(join("\n", @plines));

$standby->stop('fast');
$primary->stop('fast');
done_testing();
