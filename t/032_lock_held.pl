# t/032_lock_held.pl -- one locked key row must not stop a database's
# persistence (issue 16: "One locked row stops all persistence of a
# database").
#
# Before the fix, an uncommitted UPDATE apikey_keys ... held open on one key
# made every fold hit lock_timeout; the whole visit failed and backed off
# 10 -> 20 -> 40 s up to 5 minutes, nothing of that database was logged
# meanwhile, and a kill -9 then lost 35 s of counts.  Now logging and
# folding are separate steps, and the fold skips locked rows:
#
#   * with UPDATE apikey_keys SET name = ... WHERE key_id = X held open in
#     one session, the counts of X and of other keys keep being logged every
#     flush interval (nothing stays pending in memory), the fold writes the
#     other keys and keeps X's counts in the usage log for later (no count
#     lost), and no visit fails;
#   * once the lock is released, X's counts arrive in apikey_keys;
#   * kill -9 of the postmaster while the lock is held loses at most about
#     one flush interval of counts: what was verified but is not in the
#     tables after the restart is less than what was verified in the last
#     2 s before the kill (apikey.flush_interval = 1s), and never negative
#     (no count written twice);
#   * before that kill, the launcher is terminated once with counts pending
#     and no session left (it saves them to pg_stat/apikey.stat as at a
#     shutdown, and they stay in memory too): the launcher started next must
#     remove the file unread, and the restart after the crash must not load
#     it, or those counts would be written twice.
#
# Tokens stay in the database: keys are created into a table and verified
# from there.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = PostgreSQL::Test::Cluster->new('lockheld');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'apikey'
apikey.flush_interval = '1s'
apikey.fold_interval = '2s'
restart_after_crash = on
log_line_prefix = '%m [%p] %b %q%a '
});
$node->start;

# Wait until QUERY returns EXPECTED, for at most SECONDS of wall-clock time.
sub poll_until
{
	my ($query, $expected, $seconds) = @_;
	my $end = time + ($seconds // 60);
	my $got;
	while (1)
	{
		$got = $node->safe_psql('postgres', $query);
		return 1 if $got eq $expected;
		last if time > $end;
		usleep(200_000);
	}
	diag("timed out waiting for '$expected' from: $query\nlast result: $got");
	return 0;
}

$node->safe_psql('postgres', q{
	CREATE EXTENSION apikey;
	CREATE TABLE tok (name text PRIMARY KEY, key_id text NOT NULL, token text NOT NULL);
	INSERT INTO tok SELECT 'x', k.* FROM apikey_create('org_l', 'locked key', rate_limit => 0) k;
	INSERT INTO tok SELECT 'y', k.* FROM apikey_create('org_l', 'other key', rate_limit => 0) k;
	INSERT INTO tok SELECT 'z', k.* FROM apikey_create('org_l', 'third key', rate_limit => 0) k;
});
my %id = map { split /\|/ } split /\n/,
  $node->safe_psql('postgres', q{SELECT name || '|' || key_id FROM tok});

# VALID verifications of the named keys, n each, in one statement.
sub verify_valid
{
	my ($session, $n, @names) = @_;
	my $in = join(',', map { "'$_'" } @names);
	my $sql = qq{
		SELECT count(*) FILTER (WHERE (apikey_verify(t.token)).valid)
		  FROM tok t, generate_series(1, $n) g WHERE t.name IN ($in)};
	return defined $session ? $session->query_safe($sql) : $node->safe_psql('postgres', $sql);
}

my $usage = q{SELECT usage_count FROM apikey_keys WHERE key_id = '%s'};
# X's requests waiting in the usage log
my $x_in_log = qq{
	SELECT coalesce(sum(u.r), 0)
	  FROM apikey_usage_log l, unnest(l.key_ids, l.requests) AS u(k, r)
	 WHERE u.k = '$id{x}'};

# ---- a row lock held open -----------------------------------------------------

my $locker = $node->background_psql('postgres');
$locker->query_safe(qq{
	BEGIN;
	UPDATE apikey_keys SET name = 'renamed, not committed' WHERE key_id = '$id{x}';
});
my $log_offset = -s $node->logfile;

is(verify_valid(undef, 10, 'x', 'y', 'z'), '30', 'X, Y and Z verified 10 times each');
ok(poll_until('SELECT coalesce(sum(requests), 0) FROM apikey_stats', '0'),
	'the counts of all three keys were logged: nothing is pending in memory');
ok(poll_until(sprintf($usage, $id{y}), '10') && poll_until(sprintf($usage, $id{z}), '10'),
	'the fold wrote Y and Z (usage_count 10)');
ok(poll_until($x_in_log, '10'), 'the fold kept X\'s 10 requests in the usage log');
is($node->safe_psql('postgres', sprintf($usage, $id{x})), '0',
	'... and did not wait for its locked row (usage_count still 0)');

# More traffic while the lock is still held: logged and folded the same way.
is(verify_valid(undef, 5, 'x', 'y'), '10', 'X and Y verified 5 more times each');
ok(poll_until(sprintf($usage, $id{y}), '15'), 'Y reaches 15 while X is locked');
ok(poll_until($x_in_log, '15'), 'X\'s 15 requests wait in the log, none lost, none doubled');

my $log = slurp_file($node->logfile, $log_offset);
my @failed = grep { /apikey worker .*(ERROR|FATAL)|could not fold or sweep|worker for database \d+ failed/ }
  split /\n/, $log;
is(scalar(@failed), 0, 'no visit failed or backed off because of the locked row')
  or diag(join("\n", @failed));

$locker->query_safe('ROLLBACK');
ok(poll_until(sprintf($usage, $id{x}), '15'), 'once the lock is released, X\'s 15 requests arrive');
is($node->safe_psql('postgres', $x_in_log), '0', '... and leave the log');

$locker->quit;

# ---- a terminated launcher's file ----------------------------------------------
#
# Terminated when no session is left that could count, the launcher saves
# windows and pending counts to pg_stat/apikey.stat as at a shutdown (it
# cannot tell the two apart) -- and they stay in memory too.  The launcher
# the postmaster starts next must remove that file unread, or a later crash
# restart would load those counts a second time.
my $launcher_sql = q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'apikey launcher'};
my $old_launcher = $node->safe_psql('postgres', $launcher_sql);
like($old_launcher, qr/^\d+$/, 'the launcher runs');
my $verified = 30 + 10;       # VALID so far (all of them in the tables now)
# pending counts, then the termination, from one session that then leaves
$verified += $node->safe_psql('postgres', qq{
	SELECT count(*) FILTER (WHERE (apikey_verify(t.token)).valid)
	  FROM tok t, generate_series(1, 20) g WHERE t.name IN ('x', 'y');
	SELECT pg_terminate_backend($old_launcher);
}) =~ /^(\d+)/ ? $1 : 0;
my $dump = $node->data_dir . '/pg_stat/apikey.stat';
# (no psql here: a session would keep the launcher waiting)
my $give_up = time + 30;
usleep(50_000) until -f $dump || time > $give_up;
ok(-f $dump, 'with no session left, the terminated launcher saved pg_stat/apikey.stat');
ok(poll_until(qq{SELECT count(*) FROM pg_stat_activity
                  WHERE backend_type = 'apikey launcher' AND pid <> $old_launcher}, '1', 60),
	'the postmaster restarted the launcher');
ok(!-f $dump, '... which removed that file unread: its counts are still in memory');

# ---- kill -9 of the postmaster while the lock is held --------------------------

$locker = $node->background_psql('postgres');
$locker->query_safe(qq{
	BEGIN;
	UPDATE apikey_keys SET name = 'renamed again, not committed' WHERE key_id = '$id{x}';
});
my $app = $node->background_psql('postgres');
my $monitor = $node->background_psql('postgres');

my @batches;                  # [ end time, VALID in the batch ]
my $load = sub {
	my $n = verify_valid($app, 20, 'x', 'y');
	push @batches, [ time, $n ];
	$verified += $n;
	usleep(50_000);
};

# Load for 5 s (several flush intervals), then kill.
my $t0 = time;
$load->() while time < $t0 + 5;
# The server's processes, to wait for them after the kill.
my @pids = split /\n/, $monitor->query_safe('SELECT pid FROM pg_stat_activity');
push @pids, (split /\n/, slurp_file($node->data_dir . '/postmaster.pid'))[0];
my $kill_time = time;
$node->kill9;
my $last_2s = 0;
$last_2s += $_->[1] for grep { $_->[0] > $kill_time - 2 } @batches;
note sprintf('%d VALID verifications before the kill, %d of them in its last 2 s '
	  . '(%d batches in all)', $verified, $last_2s, scalar(@batches));

for my $s ($app, $monitor, $locker)
{
	eval { $s->quit; 1 };
}

# The children notice the postmaster's death and exit; a new postmaster
# refuses to start while any of them (or the killed postmaster, until it is
# reaped) is still there.
$give_up = time + 60;
usleep(100_000) while grep({ kill(0, $_) } @pids) && time < $give_up;
is(scalar(grep { kill(0, $_) } @pids), 0, 'the killed server\'s processes are gone');
ok($node->start, 'the server restarts after kill -9 of the postmaster');
ok(poll_until(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'apikey launcher'}, '1'),
	'the launcher runs again');

$node->safe_psql('postgres', 'SELECT apikey_flush()');
my $written = $node->safe_psql('postgres', qq{
	SELECT sum(usage_count) FROM apikey_keys WHERE key_id IN ('$id{x}', '$id{y}')});
my $lost = $verified - $written;
note "after the restart: $written of $verified VALID verifications are in apikey_keys ($lost lost)";
cmp_ok($written, '<=', $verified,
	'no count was written twice (the launcher\'s file was not loaded again after the crash)');
cmp_ok($lost, '<', $last_2s + 1,
	'the crash lost less than what was verified in its last 2 s (one flush interval is 1 s)');
is($node->safe_psql('postgres', qq{
		SELECT sum(requests) FROM apikey_usage WHERE key_id IN ('$id{x}', '$id{y}')}),
	$written, 'the hourly buckets agree with usage_count');

$log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal (?!9)|\bPANIC:|\bTRAP:/,
	'nothing crashed but the postmaster we killed');

$node->stop('fast');
done_testing();
