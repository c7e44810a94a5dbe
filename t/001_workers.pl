# t/001_workers.pl -- the background workers, end to end.
#
# With the library preloaded and no per-database configuration, the launcher
# sends short visits into every database where the extension is installed:
#   * counts reach apikey_keys.usage_count and apikey_usage without anyone
#     calling apikey_flush();
#   * expired keys are swept to is_active = false with an 'expired' event;
#   * a database created later, with CREATE EXTENSION, is served too;
#   * a database without the extension causes no errors;
#   * DROP DATABASE of a database with the extension (pending counts, visits
#     going on) completes promptly;
#   * DROP EXTENSION / CREATE EXTENSION while the workers run works;
#   * failed verifications from one client address beyond
#     apikey.alert_failures per minute become a row of apikey_alerts and a
#     NOTIFY on apikey_alerts that carries only the row's id and kind.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

# Polls are bounded: a broken worker fails the test in 60 s, not 180 s.
$PostgreSQL::Test::Utils::timeout_default = 60
  if $PostgreSQL::Test::Utils::timeout_default > 60;

my $node = PostgreSQL::Test::Cluster->new('workers');
$node->init;
# %b puts the backend type ("apikey worker", "apikey launcher") in every log
# line, so that errors of the workers can be told from the test's own.
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'apikey'
apikey.flush_interval = '500ms'
apikey.fold_interval = '1s'
apikey.sweep_interval = '2s'
apikey.alert_failures = 5
log_line_prefix = '%m [%p] %b %q%a '
});
$node->start;

# Verify TOKEN N times in database DB; returns the codes, comma separated.
sub verify_n
{
	my ($db, $token, $n, $extra) = @_;
	$extra //= '';
	return $node->safe_psql($db, qq{
		SELECT string_agg(code, ',' ORDER BY g)
		  FROM (SELECT g, (apikey_verify('$token'$extra)).code
		          FROM generate_series(1, $n) g) s});
}

# Wait until QUERY in DB returns EXPECTED; a test either way.
sub poll_is
{
	my ($db, $query, $expected, $name) = @_;
	ok($node->poll_query_until($db, $query, $expected), $name);
}

$node->poll_query_until('postgres',
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'apikey launcher'", '1')
  or die 'the apikey launcher did not start';
pass('one apikey launcher runs');

# ---- counts reach the tables through the worker -----------------------------

$node->safe_psql('postgres', 'CREATE DATABASE app');
$node->safe_psql('app', 'CREATE EXTENSION apikey');
my ($k1, $t1) = split /\|/, $node->safe_psql('app',
	"SELECT key_id, token FROM apikey_create('org_a', 'flushed by the worker', rate_limit => 0)");
my ($k2, $t2) = split /\|/, $node->safe_psql('app',
	"SELECT key_id, token FROM apikey_create('org_a', 'revoked one', rate_limit => 0)");
$node->safe_psql('app', "SELECT apikey_revoke('$k2')");

is(verify_n('app', $t1, 7), join(',', ('VALID') x 7), 'seven VALID verifications');
is(verify_n('app', $t2, 3), 'REVOKED,REVOKED,REVOKED', 'three REVOKED verifications');

# Nobody calls apikey_flush(): only the worker can move these counts.
poll_is('app', "SELECT usage_count FROM apikey_keys WHERE key_id = '$k1'",
	'7', 'the worker wrote usage_count = 7 without apikey_flush()');
poll_is('app',
	"SELECT coalesce(sum(requests), 0) || '/' || coalesce(sum(denied), 0)
	   FROM apikey_usage WHERE key_id IN ('$k1', '$k2')",
	'7/3', 'the worker wrote the hourly buckets: 7 requests, 3 denied');
is($node->safe_psql('app',
		"SELECT last_used_at IS NOT NULL FROM apikey_keys WHERE key_id = '$k1'"),
	't', 'last_used_at was set by the flush');
poll_is('app', 'SELECT coalesce(sum(requests + denied), 0) FROM apikey_stats',
	'0', 'nothing is left pending in apikey_stats');

# ---- more keys than one flush chunk ------------------------------------------
# A flush takes pending counts in chunks of 16,384 keys, a transaction each in
# the worker; each chunk goes on in the sessions' journals where the last one
# stopped.  40,000 keys need three chunks: a chunk that skipped or repeated
# records would lose or double counts.

$node->safe_psql('app', q{
	CREATE TABLE bulk_tokens AS
	WITH m AS MATERIALIZED (
		SELECT g, apikey_new_token('live') AS t FROM generate_series(1, 40000) g)
	SELECT g, (t).key_id, (t).hint, (t).hash, (t).token FROM m;
	INSERT INTO apikey_keys (key_id, org_id, name, hint, hash, environment, rate_limit)
	SELECT key_id, 'org_bulk', 'bulk ' || g, hint, hash, 'live', 0 FROM bulk_tokens});
my $bulk_verify = q{
	SELECT count(*) FROM bulk_tokens b, apikey_verify(b.token) v WHERE v.valid};
is($node->safe_psql('app', $bulk_verify), '40000', '40,000 keys verified once each');
is(verify_n('app', $node->safe_psql('app', 'SELECT token FROM bulk_tokens WHERE g = 1'), 4),
	join(',', ('VALID') x 4), 'and the first one four more times');
poll_is('app',
	"SELECT count(*) || '/' || sum(usage_count) FROM apikey_keys
	  WHERE org_id = 'org_bulk' AND usage_count > 0",
	'40000/40004', 'the worker logged and folded every one of the 40,000 keys, once');
# Again, with the workers paused: one apikey_flush() (all chunks in one
# transaction) must take every key, none left for a later visit.
$node->safe_psql('postgres', 'ALTER SYSTEM SET apikey.workers = off');
$node->reload;
$node->poll_query_until('postgres', q{
	SELECT current_setting('apikey.workers') = 'off' AND NOT EXISTS (
	       SELECT FROM pg_stat_activity WHERE backend_type = 'apikey worker')})
  or die 'the workers did not pause';
is($node->safe_psql('app', $bulk_verify), '40000', 'the 40,000 keys verified again');
# ... from a session whose planner settings would make the fold crawl: the
# fold plans with the server's methods (a hash join, in the plan trees that
# debug_print_plan logs) and the session's own settings are as it left them.
my $fold_log_offset = -s $node->logfile;
is($node->safe_psql('app', q{
	SET enable_hashjoin = off;
	SET enable_hashagg = off;
	SET debug_print_plan = on;
	SELECT apikey_flush();
	RESET debug_print_plan;
	SELECT current_setting('enable_hashjoin') || current_setting('enable_hashagg')}),
	"40000\noffoff", 'apikey_flush() logged the 40,000 keys; the session keeps its settings');
like(slurp_file($node->logfile, $fold_log_offset), qr/\{HASHJOIN/,
	'the fold planned a hash join although the session had them off');
is($node->safe_psql('app',
		"SELECT count(*) || '/' || sum(usage_count) FROM apikey_keys
		  WHERE org_id = 'org_bulk' AND usage_count = CASE WHEN key_id = (
		        SELECT key_id FROM bulk_tokens WHERE g = 1) THEN 6 ELSE 2 END"),
	'40000/80004', 'after apikey_flush(), every key counts exactly its two rounds');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET apikey.workers');
$node->reload;
$node->safe_psql('app', "DELETE FROM apikey_keys WHERE org_id = 'org_bulk'; DROP TABLE bulk_tokens");

# ---- expired keys are swept -------------------------------------------------

my ($k3) = $node->safe_psql('app',
	"SELECT key_id FROM apikey_create('org_a', 'expires', expires_at => now() + interval '1 day')");
# Backdate the expiry while the key is active (an 'updated' event).
$node->safe_psql('app',
	"UPDATE apikey_keys SET expires_at = now() - interval '1 minute' WHERE key_id = '$k3'");
poll_is('app', "SELECT is_active FROM apikey_keys WHERE key_id = '$k3'",
	'f', 'the sweeper deactivated the expired key');
is($node->safe_psql('app',
		"SELECT count(*) FROM apikey_events WHERE key_id = '$k3' AND event = 'expired'"),
	'1', '... and recorded exactly one expired event');
is($node->safe_psql('app',
		"SELECT revoked_at IS NULL FROM apikey_keys WHERE key_id = '$k3'"),
	't', '... without marking it revoked');

# ---- a database created later is served without configuration ----------------

$node->safe_psql('postgres', 'CREATE DATABASE later');
$node->safe_psql('later', 'CREATE EXTENSION apikey');
my ($k4, $t4) = split /\|/, $node->safe_psql('later',
	"SELECT key_id, token FROM apikey_create('org_b', 'second db', rate_limit => 0)");
my ($k5) = $node->safe_psql('later',
	"SELECT key_id FROM apikey_create('org_b', 'expires too', expires_at => now() + interval '1 day')");
$node->safe_psql('later',
	"UPDATE apikey_keys SET expires_at = now() - interval '1 second' WHERE key_id = '$k5'");
is(verify_n('later', $t4, 4), 'VALID,VALID,VALID,VALID', 'four VALID in the new database');
poll_is('later', "SELECT usage_count FROM apikey_keys WHERE key_id = '$k4'",
	'4', 'the new database got its counts flushed');
poll_is('later',
	"SELECT NOT is_active AND EXISTS (SELECT FROM apikey_events
	                                   WHERE key_id = '$k5' AND event = 'expired')
	   FROM apikey_keys WHERE key_id = '$k5'",
	't', 'the new database got its expired key swept');
# The other database's counts stayed where they were.
is($node->safe_psql('app', "SELECT usage_count FROM apikey_keys WHERE key_id = '$k1'"),
	'7', 'counts are per database: the first database is unchanged');

# ---- a database without the extension --------------------------------------

$node->safe_psql('postgres', 'CREATE DATABASE noext');
my $noext_oid = $node->safe_psql('postgres',
	"SELECT oid FROM pg_database WHERE datname = 'noext'");
# Each visit commits a transaction there (the check for the extension): wait
# for at least two sweep visits.
my $commits0 = $node->safe_psql('postgres',
	"SELECT xact_commit FROM pg_stat_database WHERE datname = 'noext'");
poll_is('postgres',
	"SELECT xact_commit >= $commits0 + 2 FROM pg_stat_database WHERE datname = 'noext'",
	't', 'the workers visited the database without the extension');
is($node->safe_psql('noext',
		"SELECT count(*) FROM pg_extension WHERE extname = 'apikey'"),
	'0', '... and did not install anything there');
ok(!$node->log_contains("apikey worker for database $noext_oid failed"),
	'... and no visit there failed');

# ---- DROP DATABASE with pending counts and workers visiting ---------------

for my $round (1 .. 3)
{
	$node->safe_psql('postgres', 'CREATE DATABASE dropme');
	$node->safe_psql('dropme', 'CREATE EXTENSION apikey');
	my ($tok) = $node->safe_psql('dropme', qq{
		SELECT token FROM apikey_create('org_d', 'doomed', rate_limit => 0)});
	# pending counts, so that the launcher keeps sending visits
	$node->safe_psql('dropme', qq{
		SELECT count(*) FROM (SELECT apikey_verify('$tok') FROM generate_series(1, 50)) s});
	my $t0 = time;
	my ($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE dropme');
	my $secs = time - $t0;
	is($ret, 0, "round $round: DROP DATABASE of a database with the extension succeeds")
	  or diag($err);
	cmp_ok($secs, '<', 10, "round $round: ... promptly");
	note sprintf('DROP DATABASE took %.2f s', $secs);
}

# ---- DROP EXTENSION / CREATE EXTENSION while the workers run -----------------

# Up to here the workers must have logged no ERROR (checked at the end).  A
# visit that races DROP EXTENSION (between its check for the extension and
# its flush) may log one and is retried, so the strict check stops here.
my $log_offset = -s $node->logfile;

for my $round (1 .. 3)
{
	my ($kid, $tok) = split /\|/, $node->safe_psql('app',
		"SELECT key_id, token FROM apikey_create('org_a', 'before drop', rate_limit => 0)");
	verify_n('app', $tok, 20);    # pending counts for the workers
	my $t0 = time;
	my ($ret, $out, $err) = $node->psql('app', 'DROP EXTENSION apikey');
	is($ret, 0, "round $round: DROP EXTENSION while the workers run") or diag($err);
	cmp_ok(time - $t0, '<', 10, "round $round: ... does not wait for them");
	($ret, $out, $err) = $node->psql('app', 'CREATE EXTENSION apikey');
	is($ret, 0, "round $round: CREATE EXTENSION again") or diag($err);
}
my ($k6, $t6) = split /\|/, $node->safe_psql('app',
	"SELECT key_id, token FROM apikey_create('org_a', 'after recreate', rate_limit => 0)");
is(verify_n('app', $t6, 3), 'VALID,VALID,VALID', 'the recreated extension verifies');
poll_is('app', "SELECT usage_count FROM apikey_keys WHERE key_id = '$k6'",
	'3', 'the workers flush into the recreated extension');

# ---- alerts -----------------------------------------------------------------

# A listening session; psql prints each notification after the next command.
my $listener = $node->background_psql('app');
$listener->query_safe('LISTEN apikey_alerts');
my $heard = '';

# Start the failures early enough in a minute that all of them fall into it.
$node->poll_query_until('app',
	'SELECT extract(second FROM clock_timestamp()) < 50') or die;
# Below the threshold from one address: no alert for it.
verify_n('app', 'zz_live_unknownkey0', 4, ", client_ip => '198.51.100.9'");
# Six failures (unknown token, malformed token, revoked key) from another.
verify_n('app', 'zz_live_unknownkey1', 3, ", client_ip => '203.0.113.7'");
verify_n('app', 'ak_live_garbage', 2, ", client_ip => '203.0.113.7'");
verify_n('app', $t2, 1, ", client_ip => '203.0.113.7'");

my $deadline = time + 30;
until ($heard =~ /apikey_alerts/ || time > $deadline)
{
	$heard .= $listener->query('SELECT 1') . "\n";
	usleep(200_000);
}
# The NOTIFY carries only the alert's id and kind; the details are a row of
# apikey_alerts, which only roles granted the table may read.
like($heard,
	qr/Asynchronous notification "apikey_alerts" with payload "\{"alert_id" : \d+, "kind" : "failed_verifications"\}"/,
	'the LISTEN session received an apikey_alerts NOTIFY with the alert id and kind');
unlike($heard, qr/203\.0\.113\.7/, '... and not the client address');
my ($alert_id) = $heard =~ /"alert_id" : (\d+)/;
my $row = $node->safe_psql('app', qq{
	SELECT kind, details->>'client_ip', (details->>'failures')::int, details->>'threshold'
	  FROM apikey_alerts WHERE alert_id = $alert_id});
my ($kind, $client, $failures, $threshold) = split /\|/, $row;
is($client, '203.0.113.7', 'the alert row names the client address');
ok(defined $failures && $failures >= 5 && $failures <= 6,
	'... with the number of failures (5 or 6)');
is($threshold, '5', '... and the threshold');
# Three more failures from the address in the same minute (or, if the minute
# just turned, too few for a new alert), through the revoked key so that a
# flush visit follows; once it has flushed, it has also recorded its alerts.
verify_n('app', $t2, 3, ", client_ip => '203.0.113.7'");
poll_is('app', "SELECT coalesce(sum(denied), 0) FROM apikey_stats WHERE key_id = '$k2'",
	'0', 'a later visit has run');
$heard .= $listener->query('SELECT 1') . "\n";
is($node->safe_psql('app',
		"SELECT count(*) FROM apikey_alerts WHERE details->>'client_ip' = '203.0.113.7'"),
	'1', 'one alert per address and minute');
is($node->safe_psql('app',
		"SELECT count(*) FROM apikey_alerts WHERE details->>'client_ip' = '198.51.100.9'"),
	'0', 'no alert for an address below the threshold');
$listener->quit;

# ---- no errors from the workers ---------------------------------------------

my $log = slurp_file($node->logfile);
my @worker_errors = grep { /apikey (worker|launcher) .*(ERROR|PANIC):/ }
  split /\n/, substr($log, 0, $log_offset);
is(scalar(@worker_errors), 0,
	'the workers logged no ERROR (in the database without the extension or elsewhere)')
  or diag(join("\n", @worker_errors));
unlike($log, qr/PANIC:|was terminated by signal/, 'no process crashed');

$node->stop('fast');
done_testing();
