# t/034_visit_gives_way.pl -- a visit that deadlocks with a user's DDL is the
# one that gives way (issue 15, item 4: "deadlock detected between DROP
# SCHEMA and the flushing worker: the worker should give way").
#
# t/030_chaos.pl races DROP SCHEMA / DROP EXTENSION against visits at
# random; this test provokes the ordering that matters, every time:
#
#   1. a user's transaction locks one table of the extension
#      (LOCK TABLE s.apikey_keys, or s.apikey_usage);
#   2. a visit folding or sweeping comes to that table: it either takes
#      its first locks (the usage log) and waits for it, or sees it locked
#      and leaves the step for a later visit (logging that it did);
#   3. some time later -- after a waiting visit's own deadlock check has run
#      and found nothing -- the user's transaction goes on with DROP SCHEMA
#      s CASCADE (or DROP EXTENSION apikey), which needs the usage log: if
#      the visit still held it, each would wait for the other.
#
# PostgreSQL's deadlock check runs once per wait, in the process whose
# deadlock_timeout expires first, and that process is the one cancelled.
# A visit's check runs early, when there may be no cycle yet; the user's
# runs when the DROP has waited deadlock_timeout (1 s).  So a visit gives
# way only if it never waits for a table while holding another, or stops
# waiting before that: the test passes when every DROP succeeds, whatever
# the delay between the visit coming to the table and the DROP (0.3 s and
# 0.8 s here), and the workers go on afterwards.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = PostgreSQL::Test::Cluster->new('givesway');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'apikey'
apikey.flush_interval = '100ms'
apikey.fold_interval = '300ms'
apikey.sweep_interval = '1s'
log_line_prefix = '%m [%p] %b %q%a '
});
$node->start;

my $monitor = $node->background_psql('postgres');
$monitor->set_query_timer_restart;

# Wait until QUERY (in the monitor session) returns EXPECTED, for at most
# SECONDS of wall-clock time.
sub poll_until
{
	my ($query, $expected, $seconds) = @_;
	my $end = time + ($seconds // 60);
	my $got;
	while (1)
	{
		$got = $monitor->query_safe($query);
		return 1 if $got eq $expected;
		last if time > $end;
		usleep(20_000);
	}
	diag("timed out waiting for '$expected' from: $query\nlast result: $got");
	return 0;
}

# The extension in schema s, with a key verified 10 times; returns once the
# workers have folded those counts (so that they know the extension is
# installed and fold it on schedule).
sub install
{
	$node->safe_psql('postgres', q{
		CREATE SCHEMA s;
		CREATE EXTENSION apikey SCHEMA s;
		CREATE TABLE public.tok AS SELECT k.* FROM s.apikey_create('org_g', 'gives way', rate_limit => 0) k;
		SELECT count(*) FILTER (WHERE (s.apikey_verify(t.token)).valid) FROM public.tok t, generate_series(1, 10) g;
	});
	return poll_until(q{SELECT k.usage_count FROM s.apikey_keys k JOIN public.tok USING (key_id)}, '10', 60);
}

# A visit waiting for a lock on table s.TABLE while it holds a lock on
# another table of schema s: the first half of the deadlock.
my $visit_waits = q{
	SELECT count(*) FROM pg_locks w JOIN pg_stat_activity a ON a.pid = w.pid
	 WHERE a.backend_type = 'apikey worker' AND NOT w.granted
	   AND w.relation = 's.%s'::regclass
	   AND EXISTS (SELECT FROM pg_locks h JOIN pg_class c ON c.oid = h.relation
	                WHERE h.pid = w.pid AND h.granted AND c.relnamespace = 's'::regnamespace
	                  AND c.relname <> '%s')};

# ... or a visit that saw s.TABLE locked and left its step for later.
sub visit_gave_way
{
	my ($table, $from) = @_;
	my $end = time + 30;
	while (time < $end)
	{
		return 1 if $monitor->query_safe(sprintf($visit_waits, $table, $table)) eq '1';
		my $log = slurp_file($node->logfile, $from);
		return 1 if $log =~ /left for a later visit, table "\Q$table\E" is locked/;
		usleep(20_000);
	}
	diag("no visit came to s.$table");
	return 0;
}

my @rounds = (
	[ 'apikey_keys',  0.3, 'DROP SCHEMA s CASCADE' ],
	[ 'apikey_keys',  0.8, 'DROP EXTENSION apikey; DROP SCHEMA s' ],
	[ 'apikey_usage', 0.3, 'DROP EXTENSION apikey; DROP SCHEMA s' ],
	[ 'apikey_usage', 0.8, 'DROP SCHEMA s CASCADE' ],
);
for my $round (@rounds)
{
	my ($table, $delay, $drop) = @$round;
	my $name = "$table locked, DDL $delay s after the visit began to wait";

	ok(install(), "$name: installed, and the workers fold its counts");
	my $user = $node->background_psql('postgres', on_error_stop => 0);
	$user->set_query_timer_restart;
	my $from = -s $node->logfile;
	$user->query_safe("BEGIN; LOCK TABLE s.$table IN ACCESS EXCLUSIVE MODE;");
	ok(visit_gave_way($table, $from),
		"$name: a visit came to s.$table (and waits, or left its step for later)");
	my $t_wait = time;
	usleep(10_000) while time < $t_wait + $delay;

	my $t0 = time;
	$user->query("$drop;");
	my $err = $user->{stderr};
	$user->{stderr} = '';
	unlike($err, qr/deadlock detected/, "$name: $drop did not fail with a deadlock")
	  or diag($err);
	is(join("\n", grep { /ERROR|FATAL/ } split /\n/, $err), '', "$name: ... nor with anything else");
	$user->query('COMMIT');
	note sprintf('%s took %.2f s', $drop, time - $t0);
	$user->quit;
	is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_namespace WHERE nspname = 's'}),
		'0', "$name: the schema is gone");
	# (after a failure, for the next round)
	$node->safe_psql('postgres', 'DROP SCHEMA IF EXISTS s CASCADE; DROP TABLE public.tok');
}

# A user's apikey_flush() holds the schema's fold lock until it commits: a
# visit's fold meanwhile is left for a later visit, at once, rather than
# waiting for the user's transaction (on the log rows it deleted) until its
# lock_timeout fails the step.  Once the user commits, the workers fold what
# came after, with no apikey_flush().
{
	my $name = "a user's apikey_flush() open";
	ok(install(), "$name: installed, and the workers fold its counts");
	my $verify = q{SELECT count(*) FILTER (WHERE (s.apikey_verify(t.token)).valid)
	                 FROM public.tok t, generate_series(1, %d) g};
	$node->safe_psql('postgres', sprintf($verify, 5));
	my $user = $node->background_psql('postgres', on_error_stop => 0);
	$user->set_query_timer_restart;
	my $from = -s $node->logfile;
	$user->query_safe('BEGIN; SELECT s.apikey_flush();');
	my $pid = $user->query_safe('SELECT pg_backend_pid()');
	is($node->safe_psql('postgres', qq{SELECT count(*) FROM pg_locks
	                                    WHERE pid = $pid AND locktype = 'advisory' AND granted
	                                      AND objid = 's'::regnamespace::oid AND objsubid = 97}),
		'1', "$name: its transaction holds the schema's fold lock");
	$node->safe_psql('postgres', sprintf($verify, 7));

	my $end = time + 30;
	my $log = '';
	until ($log =~ /folding the usage log: left for a later visit, another session is folding/ || time > $end)
	{
		usleep(20_000);
		$log = slurp_file($node->logfile, $from);
	}
	like($log, qr/folding the usage log: left for a later visit, another session is folding/,
		"$name: a visit's fold left its step for later");
	unlike($log, qr/apikey worker\s+ERROR:/, "$name: ... without waiting for a lock and failing");
	$user->query_safe('COMMIT');
	$user->quit;
	ok(poll_until(q{SELECT k.usage_count FROM s.apikey_keys k JOIN public.tok USING (key_id)}, '22', 60),
		"$name: after the commit the workers fold the rest (10 + 5 + 7 verifications)");
	$node->safe_psql('postgres', 'DROP SCHEMA s CASCADE; DROP TABLE public.tok');
}

my $log = slurp_file($node->logfile);
my $gave_way = () = $log =~ /apikey worker\s+ERROR:\s+(deadlock detected|canceling statement due to lock timeout|could not obtain lock)/g;
note "the visits logged $gave_way deadlocks or lock timeouts (how a visit gives way is its own business)";

like($log, qr/left for a later visit, table "apikey_(keys|usage)" is locked/,
	'a visit that found a table locked left its step for later');

# The workers go on in a fresh install.
ok(install(), 'afterwards the workers fold counts again');
unlike($log, qr/terminated by signal|\bPANIC:|\bTRAP:/, 'nothing crashed');

$monitor->quit;
$node->stop('fast');
done_testing();
