# t/002_lifecycle.pl -- counters and workers across the server's life.
#
#   * counts pending at a clean shutdown are not lost: dumped to
#     pg_stat/apikey.stat and reloaded at start, then flushed;
#   * a running rate-limit window survives the clean restart too;
#   * kill -9 of a backend: crash recovery, the launcher comes back, and
#     verification and flushing work again;
#   * a launcher terminated by pg_terminate_backend is restarted;
#   * apikey.workers = off (reload) stops the flushing, on starts it again;
#   * DROP DATABASE or DROP EXTENSION with counts pending does not leave
#     them occupying tracked-key entries for ever.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

$PostgreSQL::Test::Utils::timeout_default = 60
  if $PostgreSQL::Test::Utils::timeout_default > 60;

my $node = PostgreSQL::Test::Cluster->new('lifecycle');
$node->init;
# The workers start switched off: nothing can flush before the restart, so
# the counts found afterwards must have come through the dump file.
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'apikey'
apikey.flush_interval = '500ms'
apikey.fold_interval = '1s'
apikey.sweep_interval = '2s'
apikey.workers = off
restart_after_crash = on
log_line_prefix = '%m [%p] %b %q%a '
});
$node->start;

sub verify_n
{
	my ($token, $n) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT string_agg(code, ',' ORDER BY g)
		  FROM (SELECT g, (apikey_verify('$token')).code
		          FROM generate_series(1, $n) g) s});
}

sub usage_count
{
	my ($key_id) = @_;
	return $node->safe_psql('postgres',
		"SELECT usage_count FROM apikey_keys WHERE key_id = '$key_id'");
}

# Switch the workers on or off and wait until the launcher has seen it.
sub set_workers
{
	my ($value) = @_;
	$node->append_conf('postgresql.conf', "apikey.workers = $value\n");
	$node->reload;
	$node->poll_query_until('postgres', 'SHOW apikey.workers', $value)
	  or die "apikey.workers did not become $value";
	# A visit started just before the launcher re-read its configuration
	# ends within moments: wait for it.
	$node->poll_query_until('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'apikey worker'", '0')
	  or die 'a visit did not end';
}

sub launcher_pid
{
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'apikey launcher'");
}

$node->safe_psql('postgres', 'CREATE EXTENSION apikey');

# ---- a clean restart keeps pending counts and rate-limit windows ------------

my ($k1, $t1) = split /\|/, $node->safe_psql('postgres',
	"SELECT key_id, token FROM apikey_create('org_l', 'counted', rate_limit => 0)");
# Rate limit 3 in a 31-day window: the window cannot turn over during the test.
my ($k2, $t2) = split /\|/, $node->safe_psql('postgres', qq{
	SET apikey.default_rate_window = '31d';
	SELECT key_id, token FROM apikey_create('org_l', 'limited', rate_limit => 3)});

is(verify_n($t1, 5), join(',', ('VALID') x 5), 'five VALID before the restart');
is(verify_n($t2, 2), 'VALID,VALID', 'two of three allowed requests used before the restart');
is($node->safe_psql('postgres',
		"SELECT requests FROM apikey_stats WHERE key_id = '$k1'"),
	'5', 'five requests pending in shared memory');
is(usage_count($k1), '0', '... and none written yet');

$node->stop('fast');
ok(-f $node->data_dir . '/pg_stat/apikey.stat',
	'the clean shutdown wrote pg_stat/apikey.stat');
$node->start;

# The first process that needs the counters (here this query; otherwise the
# launcher, at its start) reads the file back, and removes it.
is($node->safe_psql('postgres',
		"SELECT requests FROM apikey_stats WHERE key_id = '$k1'"),
	'5', 'after the restart the five requests are pending again');
ok(!-f $node->data_dir . '/pg_stat/apikey.stat',
	'the dump file was consumed (a later crash must not reload it)');
is(usage_count($k1), '0', '... still not written (workers are off)');

my $r = $node->safe_psql('postgres',
	"SELECT code, rate_remaining FROM apikey_verify('$t2')");
is($r, 'VALID|0', 'the rate-limit window survived: the third request is VALID, 0 remaining');
$r = $node->safe_psql('postgres',
	"SELECT code, rate_remaining FROM apikey_verify('$t2')");
is($r, 'RATE_LIMITED|0', '... and the fourth is RATE_LIMITED');

# ---- apikey.workers: on flushes, off stops flushing ----------------------------

set_workers('on');
ok($node->poll_query_until('postgres', "SELECT usage_count FROM apikey_keys WHERE key_id = '$k1'", '5'),
	'with apikey.workers = on the reloaded counts reach usage_count');
ok($node->poll_query_until('postgres', "SELECT usage_count FROM apikey_keys WHERE key_id = '$k2'", '3'),
	'... and those of the rate-limited key (3 VALID, the RATE_LIMITED one not counted)');
is($node->safe_psql('postgres',
		"SELECT sum(denied) FROM apikey_usage WHERE key_id = '$k2'"),
	'1', '... whose RATE_LIMITED request is counted as denied');

set_workers('off');
is(verify_n($t1, 4), join(',', ('VALID') x 4), 'four VALID with apikey.workers = off');
# A negative: give the workers ample time (6 flush intervals) to do wrong.
my $t0 = time;
usleep(100_000) while time - $t0 < 3;
is(usage_count($k1), '5', 'with apikey.workers = off nothing is flushed');
is($node->safe_psql('postgres',
		"SELECT requests FROM apikey_stats WHERE key_id = '$k1'"),
	'4', '... the four requests stay pending');
set_workers('on');
ok($node->poll_query_until('postgres', "SELECT usage_count FROM apikey_keys WHERE key_id = '$k1'", '9'),
	'apikey.workers = on again: they are flushed');

# ---- kill -9 of a backend --------------------------------------------------

my $launcher_before = launcher_pid();
like($launcher_before, qr/^\d+$/, 'the launcher runs');
my $victim = $node->background_psql('postgres');
my $victim_pid = $victim->query_safe('SELECT pg_backend_pid()');
like($victim_pid, qr/^\d+$/, 'a backend to kill');
kill 'KILL', $victim_pid;
# The session is gone with the server's other processes; forget it.
eval { $victim->quit };

# (A connection attempt only: psql may fail before reading any input.)
ok($node->poll_query_until('postgres', undef, ''),
	'after kill -9 of a backend the server accepts connections again');
ok($node->log_contains('all server processes terminated; reinitializing'),
	'... after a crash restart');
ok($node->poll_query_until('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'apikey launcher'", '1'),
	'the launcher runs again after the crash restart');
isnt(launcher_pid(), $launcher_before, '... as a new process');

is(verify_n($t1, 2), 'VALID,VALID', 'verification works after the crash');
ok($node->poll_query_until('postgres', "SELECT usage_count FROM apikey_keys WHERE key_id = '$k1'", '11'),
	'... and the workers flush again');

# ---- the launcher terminated ------------------------------------------------

my $launcher_old = launcher_pid();
is($node->safe_psql('postgres', "SELECT pg_terminate_backend($launcher_old)"),
	't', 'terminate the launcher');
{
	# bgw_restart_time is 10 s: wait up to 30 s.
	local $PostgreSQL::Test::Utils::timeout_default = 30;
	ok($node->poll_query_until('postgres', qq{
			SELECT count(*) FROM pg_stat_activity
			 WHERE backend_type = 'apikey launcher' AND pid <> $launcher_old}, '1'),
		'the postmaster restarts the terminated launcher');
}
is(verify_n($t1, 3), 'VALID,VALID,VALID', 'three more VALID');
ok($node->poll_query_until('postgres', "SELECT usage_count FROM apikey_keys WHERE key_id = '$k1'", '14'),
	'the restarted launcher flushes again');

# ---- dropped databases and extensions free their tracked keys ----------------
#
# On a fresh node with apikey.max_tracked_keys = 100 (the minimum), a
# database whose 100 keys all have pending counts is dropped (or loses the
# extension) before they are flushed.  Those counts belong to keys that no
# longer exist; their entries must not keep the table full afterwards, which
# would push every other database's counts into the overflow row for good
# (and the dump at shutdown would carry them across restarts).
for my $case (['DROP DATABASE', 'postgres', 'DROP DATABASE crowded', 'small_dropdb'],
	['DROP EXTENSION', 'crowded', 'DROP EXTENSION apikey', 'small_dropext'])
{
	my ($what, $db, $sql, $name) = @$case;
	my $small = PostgreSQL::Test::Cluster->new($name);
	$small->init;
	$small->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'apikey'
apikey.flush_interval = '500ms'
apikey.fold_interval = '1s'
apikey.sweep_interval = '2s'
apikey.max_tracked_keys = 100
apikey.workers = off
});
	$small->start;
	$small->safe_psql('postgres', 'CREATE DATABASE crowded');
	$small->safe_psql('crowded', 'CREATE EXTENSION apikey');
	is($small->safe_psql('crowded', qq{
		CREATE TEMP TABLE toks AS
		  SELECT (apikey_create('org_c', 'crowd ' || g, rate_limit => 0)).token
		    FROM generate_series(1, 100) g;
		SELECT count(*) FILTER (WHERE v.valid) FROM toks, LATERAL apikey_verify(toks.token) v;
		SELECT count(*) FILTER (WHERE NOT overflow) || '/' || count(*) FILTER (WHERE overflow)
		  FROM apikey_stats}),
		"100\n100/0",
		"$what: 100 keys verified, the tracked-key table is exactly full, no overflow");
	$small->safe_psql($db, $sql);
	# Workers on; give the launcher a few rounds (it visits every 500 ms).
	$small->append_conf('postgresql.conf', "apikey.workers = on\n");
	$small->reload;
	$small->poll_query_until('postgres', 'SHOW apikey.workers', 'on') or die;
	$t0 = time;
	usleep(100_000) while time - $t0 < 3;
	$small->safe_psql('postgres', 'CREATE EXTENSION apikey');
	my ($k3, $t3) = split /\|/, $small->safe_psql('postgres',
		"SELECT key_id, token FROM apikey_create('org_s', 'after drop', rate_limit => 0)");
	is($small->safe_psql('postgres', qq{
			SELECT string_agg(code, ',') FROM (SELECT (apikey_verify('$t3')).code
			                                     FROM generate_series(1, 2)) s}),
		'VALID,VALID', "$what: a new key in another database verifies");
	is($small->safe_psql('postgres',
			'SELECT count(*) FROM apikey_stats WHERE overflow'),
		'0', "$what: its counts are tracked, not pushed into the overflow row");
	{
		local $PostgreSQL::Test::Utils::timeout_default = 15;
		ok($small->poll_query_until('postgres',
				"SELECT usage_count FROM apikey_keys WHERE key_id = '$k3'", '2'),
			"$what: ... and reach usage_count");
	}
	$small->stop('fast');
}

# ---- no errors from the workers ---------------------------------------------

my $log = slurp_file($node->logfile);
my @worker_errors = grep { /apikey (worker|launcher) .*(ERROR|PANIC):/ } split /\n/, $log;
is(scalar(@worker_errors), 0, 'the workers logged no ERROR')
  or diag(join("\n", @worker_errors));

$node->stop('fast');
done_testing();
