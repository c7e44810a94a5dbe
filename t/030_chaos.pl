# t/030_chaos.pl -- chaos: DDL, updates, dropped databases and killed workers
# racing verifications, flushes and worker visits (issue 15, item 4).
#
# For a bounded time (APIKEY_CHAOS_SECONDS, default 40), with visits every
# 100 ms (apikey.flush_interval), folds every 300 ms and sweeps every second:
#
#   * application sessions verify keys, call apikey_record and apikey_flush()
#     in loops, in a database whose extension is being dropped under them
#     ("chaos") and in one that is being updated 1.1 <-> 2.1 ("updown"); they
#     tolerate only the errors a concurrent DROP or UPDATE makes legitimate
#     (function / relation / schema / extension does not exist, their own
#     lock_timeout, ...) and record any other;
#   * a DDL loop, as fast as it can: CREATE SCHEMA s, CREATE EXTENSION apikey
#     SCHEMA s, issue and verify 30 keys, apikey_record for 5, sleep 0-0.3 s,
#     then wait (at most 0.5 s) for a visit to the database to be in the
#     middle of its steps, and DROP SCHEMA s CASCADE (every other cycle DROP
#     EXTENSION apikey first) under it.
#     This is the loop that made a visit segfault with the old code (2588e74:
#     a visit looked its schema up once, then called
#     quote_identifier(get_namespace_name(nspid)) on NULL after the DROP);
#     the test counts how often a visit reached that very point (the new code
#     raises "the schema of the apikey extension was dropped concurrently"
#     there) and requires that it did;
#   * another loop, in turn: ALTER EXTENSION apikey UPDATE TO '2.1' and back
#     TO '1.1'; CREATE DATABASE + CREATE EXTENSION + verifications + DROP
#     DATABASE; pg_terminate_backend of the visits (and, once, of the
#     launcher);
#   * a separate, undisturbed database ("steady") where fixed keys are
#     verified, recorded and flushed (by hand and by the workers) throughout.
#
# Passes when:
#   * the server log has no "terminated by signal", PANIC, TRAP or crash
#     restart;
#   * no DDL statement of the loops failed: in particular no "deadlock
#     detected" (a visit must give way, not the user's DDL);
#   * the application sessions met no error other than the tolerated ones;
#   * the workers come back: a launcher runs at the end, and counts reach
#     the tables of "steady" without anyone calling apikey_flush();
#   * no count is written twice or lost: in "steady", after a final
#     apikey_flush(), usage_count and the hourly buckets equal exactly the
#     VALID verifications, denials and apikey_record calls the sessions made.
#
# Then, with the workers off: statement_timeout and pg_cancel_backend in the
# middle of an apikey_flush() of 100,000 pending keys give every count back;
# the final flush writes each key exactly once.
#
# Tokens never leave the database: keys are created into tables and verified
# from there, so neither this test's log nor the server log can contain one.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time usleep);

$PostgreSQL::Test::Utils::timeout_default = 60
  if $PostgreSQL::Test::Utils::timeout_default > 60;

my $chaos_seconds = $ENV{APIKEY_CHAOS_SECONDS} // 40;
my $bulk_keys = 100_000;
my $tmp = PostgreSQL::Test::Utils::tempdir;

my $node = PostgreSQL::Test::Cluster->new('chaos');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'apikey'
apikey.flush_interval = '100ms'
apikey.fold_interval = '300ms'
apikey.sweep_interval = '1s'
max_worker_processes = 16
max_connections = 40
restart_after_crash = on
log_line_prefix = '%m [%p] %b %q%a '
});
$node->start;

# ---- the application's loop --------------------------------------------------
#
# app_loop verifies the keys it has (those in app_tokens, or one it creates
# in schema nsp when own_key), calls apikey_record every record_every and
# apikey_flush() every flush_every iterations, each iteration in its own
# transaction, until run_until.  An error ends the iteration: an expected
# one (its SQLSTATE in tolerate) is counted, any other recorded; both in
# app_errors.  What each key got is written to app_tally at the end.
#
# Like the workers, the application sessions give way to DDL: a short
# lock_timeout and deadlock_timeout, so that a deadlock the DDL loop loses
# can only be one with a worker (the DDL's error names the other process).
my $app_sql = q{
CREATE TABLE app_tokens (name text PRIMARY KEY, key_id text NOT NULL, token text NOT NULL);
CREATE TABLE app_sessions (session text PRIMARY KEY, pid integer NOT NULL);
CREATE TABLE app_tally (session text, key_name text, verified bigint, valid bigint,
                        rate_limited bigint, other bigint, recorded bigint, flushes bigint,
                        PRIMARY KEY (session, key_name));
CREATE TABLE app_errors (session text, state text, message text, tolerated boolean,
                         n bigint NOT NULL, PRIMARY KEY (session, state, message));

CREATE PROCEDURE app_loop(p_session text, nsp text, run_until timestamptz, own_key boolean,
                          record_every integer, flush_every integer, pause float8,
                          tolerate text[])
LANGUAGE plpgsql AS $proc$
DECLARE
    names    text[];
    ids      text[];
    toks     text[];
    nkeys    integer;
    verified bigint[];
    valid    bigint[];
    limited  bigint[];
    other    bigint[];
    recorded bigint[];
    flushes  bigint := 0;
    iter     bigint := 0;
    kid      text;
    tok      text;
    c        text;
    st       text;
    msg      text;
BEGIN
    PERFORM set_config('lock_timeout', '500ms', false);
    PERFORM set_config('deadlock_timeout', '100ms', false);
    INSERT INTO app_sessions VALUES (p_session, pg_backend_pid());
    COMMIT;
    IF own_key THEN
        names := ARRAY['own'];
    ELSE
        SELECT array_agg(t.name ORDER BY t.name), array_agg(t.key_id ORDER BY t.name),
               array_agg(t.token ORDER BY t.name)
          INTO names, ids, toks FROM app_tokens t;
    END IF;
    nkeys := cardinality(names);
    verified := array_fill(0::bigint, ARRAY[nkeys]);
    valid := verified; limited := verified; other := verified; recorded := verified;

    WHILE clock_timestamp() < run_until LOOP
        iter := iter + 1;
        BEGIN
            IF own_key AND toks IS NULL THEN
                EXECUTE format('SELECT k.key_id, k.token FROM %I.apikey_create(%L, %L, rate_limit => 0) k',
                               nsp, 'org_app', p_session) INTO kid, tok;
                ids := ARRAY[kid];
                toks := ARRAY[tok];
            END IF;
            FOR i IN 1 .. nkeys LOOP
                EXECUTE format('SELECT v.code FROM %I.apikey_verify($1) v', nsp) INTO c USING toks[i];
                verified[i] := verified[i] + 1;
                IF c = 'VALID' THEN
                    valid[i] := valid[i] + 1;
                ELSIF c = 'RATE_LIMITED' THEN
                    limited[i] := limited[i] + 1;
                ELSE
                    other[i] := other[i] + 1;
                END IF;
            END LOOP;
            IF record_every > 0 AND iter % record_every = 0 THEN
                EXECUTE format('SELECT %I.apikey_record($1, %L, 200, 2.5)', nsp, '/app') USING ids[1];
                recorded[1] := recorded[1] + 1;
            END IF;
            IF flush_every > 0 AND iter % flush_every = 0 THEN
                EXECUTE format('SELECT %I.apikey_flush()', nsp);
                flushes := flushes + 1;
            END IF;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
            msg := regexp_replace(left(msg, 200), '[0-9]+', 'N', 'g');
            INSERT INTO app_errors AS e VALUES (p_session, st, msg,
                   st = ANY (tolerate) AND (st <> 'XX000' OR
                       msg ~ '^(could not open relation with OID|cache lookup failed for)'), 1)
              ON CONFLICT (session, state, message) DO UPDATE SET n = e.n + 1;
            IF own_key THEN
                toks := NULL;   -- the key may have gone with the extension
            END IF;
        END;
        COMMIT;
        PERFORM pg_sleep(pause);
    END LOOP;
    INSERT INTO app_tally
    SELECT p_session, names[i], verified[i], valid[i], limited[i], other[i], recorded[i],
           CASE WHEN i = 1 THEN flushes ELSE 0 END
      FROM generate_subscripts(names, 1) i;
    COMMIT;
END
$proc$;
};

# What a concurrent DROP or UPDATE of the extension may make a call fail with.
my $ddl_errors = q{'{42883,42P01,3F000,42704,55006,55P03,40P01,XX000}'};
# An apikey_flush() by hand may wait for a visit's rows and give up.
my $flush_errors = q{'{55P03,40P01}'};

# ---- the databases ---------------------------------------------------------

# "steady": nobody drops anything here; its counts must come out exact.
$node->safe_psql('postgres', 'CREATE DATABASE steady');
$node->safe_psql('steady', 'CREATE EXTENSION apikey');
$node->safe_psql('steady', $app_sql);
$node->safe_psql('steady', q{
	SET apikey.default_rate_window = 1;
	INSERT INTO app_tokens SELECT 'a_unlimited', k.* FROM apikey_create('org_s', 'steady a', rate_limit => 0) k;
	INSERT INTO app_tokens SELECT 'b_unlimited', k.* FROM apikey_create('org_s', 'steady b', rate_limit => 0) k;
	-- 20 per second: both VALID and RATE_LIMITED answers, and windows that end
	INSERT INTO app_tokens SELECT 'c_limited', k.* FROM apikey_create('org_s', 'steady c', rate_limit => 20) k;
	CREATE TABLE probe AS SELECT k.* FROM apikey_create('org_s', 'probe', rate_limit => 0) k;
});

# "chaos": the extension comes and goes in schema s.
$node->safe_psql('postgres', 'CREATE DATABASE chaos');
$node->safe_psql('chaos', $app_sql);

# "updown": 1.1 with users to map, updated to 2.1 and back again and again.
$node->safe_psql('postgres', 'CREATE DATABASE updown');
$node->safe_psql('updown', q{
	CREATE TABLE users (id integer PRIMARY KEY, organization_id integer);
	INSERT INTO users VALUES (1, 10), (2, 20);
	CREATE EXTENSION apikey VERSION '1.1';
});
$node->safe_psql('updown', $app_sql);
$node->safe_psql('updown', q{
	INSERT INTO app_tokens
	SELECT 'legacy', k.key_id, k.key FROM apikey_generate('1', 'legacy key', rate_limit_per_hour => 0) k;
});

poll_until('postgres',
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'apikey launcher'", '1')
  or die 'the apikey launcher did not start';

# Wait until QUERY in DB returns EXPECTED, for at most SECONDS of wall-clock
# time (poll_query_until counts attempts, and each psql takes a while on a
# busy machine).
sub poll_until
{
	my ($db, $query, $expected, $seconds) = @_;
	my $end = time + ($seconds // 60);
	my $got;
	while (1)
	{
		$got = $node->safe_psql($db, $query);
		return 1 if $got eq $expected;
		last if time > $end;
		usleep(200_000);
	}
	diag("timed out waiting for '$expected' from: $query\nlast result: $got");
	return 0;
}

# ---- background sessions ---------------------------------------------------

my @sessions;

# psql in the background, output to files; returns its record.
sub start_psql
{
	my ($name, $db, @input) = @_;
	my $s = { name => $name, out => "$tmp/$name.out", err => "$tmp/$name.err" };
	$s->{h} = IPC::Run::start(
		[
			'psql', '-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=0',
			'-d', $node->connstr($db), @input
		],
		'<', \'', '>', $s->{out}, '2>', $s->{err},
		IPC::Run::timeout($chaos_seconds + 180));
	push @sessions, $s;
	return $s;
}

# Wait for every background session to end (they stop at the deadline).
sub finish_sessions
{
	for my $s (@sessions)
	{
		eval { $s->{h}->finish; 1 } or diag("session $s->{name}: $@");
	}
}

# ERROR lines of psql's stderr, each with the lines that follow it (DETAIL,
# and the rest of a deadlock's description).
sub psql_errors
{
	my ($text) = @_;
	my @errors;
	my $in_error = 0;
	for my $line (split /\n/, $text // '')
	{
		if ($line =~ /^(?:psql:[^:]*:\d+: )?(?:ERROR|FATAL|PANIC):|^psql: error:/)
		{
			push @errors, $line;
			$in_error = 1;
		}
		elsif ($line =~ /^(?:psql:[^:]*:\d+: )?(?:WARNING|NOTICE|INFO|LOG|DEBUG\d?):/)
		{
			$in_error = 0;
		}
		elsif ($in_error)
		{
			$errors[-1] .= "\n$line";
		}
	}
	return @errors;
}

sub session_errors
{
	my ($s) = @_;
	return psql_errors(-e $s->{err} ? slurp_file($s->{err}) : '');
}

my $t_start = time;
my $deadline = $t_start + $chaos_seconds;
my $until = sprintf("to_timestamp(%.3f)", $deadline);

start_psql('chaos_a', 'chaos', '-c',
	"CALL app_loop('chaos_a', 's', $until, true, 1, 5, 0.02, $ddl_errors)");
start_psql('chaos_b', 'chaos', '-c',
	"CALL app_loop('chaos_b', 's', $until, true, 2, 0, 0.02, $ddl_errors)");
start_psql('updown_a', 'updown', '-c',
	"CALL app_loop('updown_a', 'public', $until, false, 3, 10, 0.02, $ddl_errors)");
start_psql('steady_1', 'steady', '-c',
	"CALL app_loop('steady_1', 'public', $until, false, 1, 0, 0.02, '{}')");
start_psql('steady_2', 'steady', '-c',
	"CALL app_loop('steady_2', 'public', $until, false, 3, 0, 0.02, '{}')");
# flushes by hand, racing the workers' visits
start_psql('steady_flush', 'steady', '-c', qq{
	DO \$\$ BEGIN
	  PERFORM set_config('lock_timeout', '500ms', false);
	  WHILE clock_timestamp() < $until LOOP
	    BEGIN
	      PERFORM apikey_flush();
	    EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
	      INSERT INTO app_errors AS e VALUES ('steady_flush', '55P03', 'flush gave way', true, 1)
	        ON CONFLICT (session, state, message) DO UPDATE SET n = e.n + 1;
	    END;
	    PERFORM pg_sleep(0.2);
	  END LOOP;
	END \$\$});

# The DDL loop, as a psql script that stops itself at the deadline.
my $script = '';
for my $cycle (1 .. 2000)
{
	my $drop_extension = $cycle % 2 == 0 ? "DROP EXTENSION apikey;\n" : '';
	$script .= qq{SELECT clock_timestamp() >= $until AS chaos_over \\gset
\\if :chaos_over
\\q
\\endif
SELECT 'cycle $cycle';
CREATE SCHEMA s;
CREATE EXTENSION apikey SCHEMA s;
CREATE TEMP TABLE cycle_keys AS
  SELECT k.key_id, k.token
    FROM generate_series(1, 30) g, s.apikey_create('org_cycle', 'cycle key ' || g, rate_limit => 0) k;
SELECT 'valid ' || count(*) FROM cycle_keys c, s.apikey_verify(c.token) v WHERE v.valid;
SELECT 'recorded ' || count(*)
  FROM (SELECT s.apikey_record(key_id, '/cycle', 200, 1.5) FROM cycle_keys ORDER BY key_id LIMIT 5) r;
SELECT pg_sleep(random() * 0.3);
DO \$\$ BEGIN
  FOR i IN 1 .. 50 LOOP
    PERFORM pg_stat_clear_snapshot();
    EXIT WHEN EXISTS (SELECT FROM pg_stat_activity
                       WHERE backend_type = 'apikey worker' AND datname = current_database()
                         AND state = 'active' AND query LIKE 'apikey:%');
    PERFORM pg_sleep(0.01);
  END LOOP;
END \$\$;
SELECT 'visits ' || count(*) FROM pg_stat_activity
 WHERE backend_type = 'apikey worker' AND datname = current_database() AND state = 'active';
${drop_extension}DROP SCHEMA s CASCADE;
DROP TABLE cycle_keys;
};
}
PostgreSQL::Test::Utils::append_to_file("$tmp/ddl.sql", $script);
my $ddl = start_psql('ddl', 'chaos', '-f', "$tmp/ddl.sql");

# ---- the other loop, in turn --------------------------------------------------

my @fg_errors;
my %fg_count;

# One psql session for the whole loop (\c switches database): starting a
# psql per statement would spend the run starting processes.
my $fg = $node->background_psql('postgres', on_error_stop => 0);
$fg->set_query_timer_restart;
my $fg_db = 'postgres';

# Run SQL in database db; keep its errors (the migration's WARNINGs are not
# errors).  Returns its output.
sub fg_sql
{
	my ($db, $sql) = @_;
	if ($db ne $fg_db)
	{
		$fg->query("\\c $db");
		$fg_db = $db;
	}
	my $out = $fg->query($sql);
	push @fg_errors, psql_errors($fg->{stderr});
	$fg->{stderr} = '';
	return $out // '';
}

sub update_round_trip
{
	fg_sql('updown', q{
		SET apikey.org_mapping = 'SELECT id::text AS user_id, organization_id::text AS org_id FROM users';
		ALTER EXTENSION apikey UPDATE TO '2.1';});
	# keys made in 2.1 carry created_by, so the downgrade can proceed
	fg_sql('updown', q{
		SELECT count(*) FROM apikey_create('10', 'made in 2.1', created_by => '1', rate_limit => 0)});
	fg_sql('updown', q{ALTER EXTENSION apikey UPDATE TO '1.1'});
	$fg_count{update}++;
}

sub churn_database
{
	fg_sql('postgres', 'CREATE DATABASE churn');
	fg_sql('churn', q{
		CREATE EXTENSION apikey;
		CREATE TEMP TABLE t AS
		  SELECT k.token FROM generate_series(1, 20) g, apikey_create('org_churn', 'churn ' || g, rate_limit => 0) k;
		SELECT count(*) FROM t, apikey_verify(t.token) v WHERE v.valid;
		SELECT pg_sleep(random() * 0.3);});
	fg_sql('postgres', 'DROP DATABASE churn');
	$fg_count{churn}++;
}

# Terminate the visits running now, a few times over a second, so that
# some die while logging, folding or sweeping.
sub terminate_visits
{
	for (1 .. 10)
	{
		$fg_count{visits_terminated} += fg_sql('postgres', q{
			SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			 WHERE backend_type = 'apikey worker'});
		usleep(100_000);
	}
}

my $launcher_terminated = 0;
my @turns = (\&update_round_trip, \&churn_database, \&terminate_visits);
for (my $turn = 0; time < $deadline; $turn++)
{
	$turns[ $turn % @turns ]->();
	# Once, early: the launcher itself (restarted by the postmaster after
	# bgw_restart_time, 10 s; the rest of the run has visits again).
	if (!$launcher_terminated && time > $t_start + $chaos_seconds / 5)
	{
		$launcher_terminated = fg_sql('postgres', q{
			SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			 WHERE backend_type = 'apikey launcher'});
	}
}
$fg->quit;
finish_sessions();
note sprintf('chaos ran %.1f s: %d update round trips, %d databases created and dropped, '
	  . '%d visits terminated, launcher terminated %d time(s)',
	time - $t_start, $fg_count{update} // 0, $fg_count{churn} // 0,
	$fg_count{visits_terminated} // 0, $launcher_terminated);

# ---- nothing crashed ---------------------------------------------------------

my $log = slurp_file($node->logfile);
my @crashes = grep {
	/terminated by signal|\bPANIC:|\bTRAP:|server process .* was terminated|
	 all server processes terminated|was terminated by exception/x
} split /\n/, $log;
is(scalar(@crashes), 0, 'no process crashed (no signal, PANIC, TRAP or crash restart)')
  or diag(join("\n", @crashes[ 0 .. ($#crashes < 20 ? $#crashes : 19) ]));

# ---- the DDL loop ------------------------------------------------------------

my $ddl_out = slurp_file($ddl->{out});
my $cycles = () = $ddl_out =~ /^cycle \d+$/mg;
my @valid = $ddl_out =~ /^valid (\d+)$/mg;
my @visits = $ddl_out =~ /^visits (\d+)$/mg;
my $drops_during_visits = grep { $_ > 0 } @visits;
# Visits that raced a DROP: they found the extension, then its schema or
# tables gone, or locked by the DROP (the visit then leaves its step for a
# later visit: "left for a later visit, table ... is locked").
my @raced = grep {
	/apikey\ worker\s+ERROR:.*(dropped\ concurrently|relation\ "s\.apikey_\w+"\ does\ not\ exist|
	   could\ not\ open\ relation\ with\ OID|not\ found\ in\ the\ schema\ of\ the\ apikey\ extension)
	 |apikey\ worker\s+LOG:.*left\ for\ a\ later\ visit,\ table/x
} split /\n/, $log;
my $gave_way = grep { /left for a later visit/ } @raced;
# Visit steps that began after the DROP had committed.  Where a step starts
# by building a schema-qualified name, the new code raises "dropped
# concurrently"; the old code called quote_identifier(get_namespace_name())
# there and crashed on NULL.
my $after_commit = grep { /dropped concurrently|not found in the schema/ } @raced;
my $old_crash_site = grep { /dropped concurrently/ } @raced;
note "DDL loop: $cycles cycles; $drops_during_visits DROPs issued while a visit to the database "
  . 'ran; ' . scalar(@raced) . " visits raced a DROP ($gave_way left a step for later); $after_commit visit steps began after the "
  . "DROP had committed, $old_crash_site of them where the old code crashed";
cmp_ok($cycles, '>=', 10, 'the DDL loop ran at least 10 cycles');
is(scalar(grep { $_ != 30 } @valid), 0,
	'every cycle verified its 30 new keys VALID');
cmp_ok(scalar(@raced), '>=', 1,
	'visits raced the DROPs: they found the extension, then its schema or tables gone or locked');

my $app_pids = join(',', map {
		$node->safe_psql($_, 'SELECT coalesce(string_agg(pid::text, \',\'), \'\') FROM app_sessions')
	} qw(chaos updown));
my %app_pid = map { $_ => 1 } grep { length } split /,/, $app_pids;
# A deadlock names its processes: the first is the one that detected it
# (and failed).  One between two users' statements (an application session
# and the DDL) is PostgreSQL's ordinary business; one with anybody else -- a
# visit -- is what must not happen: the visits must give way.
sub worker_deadlocks
{
	return grep {
		my ($victim, @others) = /[Pp]rocess (\d+)/g;
		!@others || grep { $_ ne $victim && !$app_pid{$_} } @others;
	} grep { /deadlock detected/ } @_;
}

my @ddl_errors = session_errors($ddl);
my @deadlocks = grep { /deadlock detected/ } (@ddl_errors, @fg_errors);
my @worker_deadlocks = worker_deadlocks(@ddl_errors, @fg_errors);
is(scalar(@worker_deadlocks), 0,
	'no "deadlock detected" between the users\' DDL and a worker: the visits give way')
  or diag(join("\n", @worker_deadlocks));
note scalar(@deadlocks) - scalar(@worker_deadlocks)
  . ' deadlock(s) of the DDL with application sessions';
my $visit_victims = () = $log =~ /apikey worker\s+ERROR:\s+deadlock detected/g;
note "$visit_victims visit(s) gave way in a deadlock";
my @other_ddl_errors = grep { !/deadlock detected/ } @ddl_errors;
is(scalar(@other_ddl_errors), 0, 'no other statement of the DDL loop failed')
  or diag(join("\n", @other_ddl_errors[ 0 .. ($#other_ddl_errors < 20 ? $#other_ddl_errors : 19) ]));
my @other_fg_errors = grep { !/deadlock detected/ } @fg_errors;
is(scalar(@other_fg_errors), 0,
	'ALTER EXTENSION UPDATE both ways, CREATE / DROP DATABASE and the terminations never failed otherwise')
  or diag(join("\n", @other_fg_errors));

# ---- the application sessions ---------------------------------------------------

for my $db (qw(chaos updown steady))
{
	my $unexpected = $node->safe_psql($db, q{
		SELECT string_agg(session || ': ' || state || ' ' || message || ' (x' || n || ')', E'\n')
		  FROM app_errors WHERE NOT tolerated});
	is($unexpected, '', "$db: the application sessions met no unexpected error")
	  or diag($unexpected);
	note "$db: tolerated errors:\n"
	  . $node->safe_psql($db, q{
		SELECT string_agg(session || ': ' || state || ' ' || message || ' (x' || n || ')', E'\n'
		                  ORDER BY session, n DESC)
		  FROM app_errors WHERE tolerated});
	note "$db: verifications: "
	  . $node->safe_psql($db, q{
		SELECT string_agg(session || '/' || key_name || ' ' || verified || ' verified, '
		                  || valid || ' VALID, ' || rate_limited || ' RATE_LIMITED, '
		                  || other || ' other, ' || recorded || ' recorded, '
		                  || flushes || ' flushes', '; ' ORDER BY session, key_name)
		  FROM app_tally});
}
for my $s (grep { $_->{name} =~ /^(chaos|updown|steady)_/ } @sessions)
{
	my @errors = session_errors($s);
	is(scalar(@errors), 0, "session $s->{name} ended normally") or diag(join("\n", @errors));
}
is($node->safe_psql('chaos', 'SELECT count(*) FROM app_tally'), '2',
	'both chaos sessions reported');
cmp_ok($node->safe_psql('chaos', "SELECT sum(valid) FROM app_tally"), '>', 0,
	'... and were admitted between the drops');
cmp_ok($node->safe_psql('updown', "SELECT sum(valid) FROM app_tally"), '>', 0,
	'the 1.1 key kept verifying across the updates');

# ---- the workers come back ---------------------------------------------------

# (bgw_restart_time is 10 s after the termination)
ok(poll_until('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'apikey launcher'", '1'),
	'a launcher runs after the chaos');
is($node->safe_psql('steady', q{
		SELECT count(*) FILTER (WHERE (apikey_verify(p.token)).valid)
		  FROM probe p, generate_series(1, 5) g}),
	'5', 'five more VALID verifications in steady');
ok(poll_until('steady',
		'SELECT k.usage_count FROM apikey_keys k JOIN probe USING (key_id)', '5'),
	'... reach usage_count through the workers, without apikey_flush()');

# ---- steady: every count exactly once ------------------------------------------

$node->safe_psql('steady', 'SELECT apikey_flush()');
my $per_key = $node->safe_psql('steady', q{
	WITH tally AS (
	  SELECT key_name, sum(valid) AS valid, sum(rate_limited) AS rate_limited,
	         sum(other) AS other, sum(recorded) AS recorded
	    FROM app_tally GROUP BY key_name),
	usage AS (
	  SELECT key_id, sum(requests) AS requests, sum(denied) AS denied, sum(responses) AS responses
	    FROM apikey_usage GROUP BY key_id)
	SELECT t.name || ' usage_count=' || k.usage_count || ' requests=' || coalesce(u.requests, 0)
	       || ' valid=' || y.valid || ' denied=' || coalesce(u.denied, 0)
	       || ' rate_limited=' || y.rate_limited || ' other=' || y.other
	       || ' responses=' || coalesce(u.responses, 0) || ' recorded=' || y.recorded
	       || CASE WHEN k.usage_count = y.valid AND coalesce(u.requests, 0) = y.valid
	                AND coalesce(u.denied, 0) = y.rate_limited + y.other
	                AND coalesce(u.responses, 0) = y.recorded
	               THEN ' exact' ELSE ' WRONG' END
	  FROM app_tokens t JOIN apikey_keys k USING (key_id) JOIN tally y ON y.key_name = t.name
	  LEFT JOIN usage u USING (key_id)
	 ORDER BY t.name});
note "steady, after a final apikey_flush():\n$per_key";
like($per_key, qr/^a_unlimited .* exact\nb_unlimited .* exact\nc_limited .* exact$/s,
	'steady: usage_count, requests, denials and responses equal exactly what the sessions did')
  or diag($per_key);
like($node->safe_psql('steady', q{SELECT sum(valid) || '/' || sum(rate_limited) FROM app_tally WHERE key_name = 'c_limited'}),
	qr/^[1-9]\d*\/[1-9]\d*$/, '... with both VALID and RATE_LIMITED answers for the limited key');
is($node->safe_psql('steady',
		'SELECT count(*) FROM apikey_stats WHERE requests + denied + responses > 0'),
	'0', '... and nothing left pending');

# ---- statement_timeout and cancel in the middle of apikey_flush() ------------------

# The workers are switched off, so that only these flushes move counts.
$node->append_conf('postgresql.conf', "apikey.workers = off\n");
$node->reload;
poll_until('postgres', 'SHOW apikey.workers', 'off') or die;
poll_until('postgres',
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'apikey worker'", '0')
  or die 'a visit did not end';

# 100,000 keys, written straight into the table (with the audit trigger
# off: apikey_create would take a minute).  Their tokens do not carry the
# "ak" prefix, so they are looked up by hash like imported keys.
$node->safe_psql('postgres', 'CREATE DATABASE bulk');
$node->safe_psql('bulk', qq{
	CREATE EXTENSION apikey;
	BEGIN;
	ALTER TABLE apikey_keys DISABLE TRIGGER USER;
	INSERT INTO apikey_keys (key_id, org_id, name, hint, hash, environment, scopes, metadata,
	                         rate_limit, is_active, created_at, usage_count)
	SELECT 'bulk_' || g, 'org_bulk', 'bulk ' || g, 'zz_live_', sha256(convert_to('zz_live_bulk' || g, 'UTF8')),
	       'live', '{}', '{}', 0, true, now(), 0
	  FROM generate_series(1, $bulk_keys) g;
	ALTER TABLE apikey_keys ENABLE TRIGGER USER;
	COMMIT;});
is($node->safe_psql('bulk', qq{
		SELECT count(*) FROM generate_series(1, $bulk_keys) g, apikey_verify('zz_live_bulk' || g) v
		 WHERE v.valid}),
	$bulk_keys, "$bulk_keys keys verified once each");

# pending in memory | in the usage log | in apikey_keys
my $where_counts = q{
	SELECT (SELECT coalesce(sum(requests), 0) FROM apikey_stats) || '|' ||
	       (SELECT coalesce(sum(entries), 0) FROM apikey_usage_log) || '|' ||
	       (SELECT coalesce(sum(usage_count), 0) FROM apikey_keys)};
is($node->safe_psql('bulk', $where_counts), "$bulk_keys|0|0",
	'all of them pending in shared memory');

my $flusher = $node->background_psql('bulk', on_error_stop => 0);
my $flusher_pid = $flusher->query_safe('SELECT pg_backend_pid()');

# Run SQL in the flusher; returns its stderr (and clears it).
sub flusher_query
{
	my ($sql) = @_;
	$flusher->query($sql);
	my $err = $flusher->{stderr};
	$flusher->{stderr} = '';
	return $err;
}

my $cancelled = 0;
for my $timeout ('50ms', '500ms', '2s')
{
	my $err = flusher_query("SET statement_timeout = '$timeout'; SELECT apikey_flush();");
	if ($err =~ /canceling statement due to statement timeout/)
	{
		$cancelled++;
		is($node->safe_psql('bulk', $where_counts), "$bulk_keys|0|0",
			"apikey_flush() cancelled by statement_timeout = $timeout: every count is back in memory");
	}
	else
	{
		note "apikey_flush() within statement_timeout = $timeout: " . ($err || 'completed');
		last;
	}
}
flusher_query('RESET statement_timeout');

# pg_cancel_backend at two moments of a flush without a timeout.
for my $after_ms (300, 3000)
{
	last if $cancelled == 0;    # a flush already completed: nothing left to cancel
	$flusher->query_until(qr/started/, "\\echo started\nSELECT apikey_flush();\n");
	my $running = poll_until('postgres', qq{
		SELECT count(*) FROM pg_stat_activity
		 WHERE pid = $flusher_pid AND state = 'active' AND query LIKE '%apikey_flush%'
		   AND clock_timestamp() - query_start > interval '$after_ms ms'}, '1', 30);
	my $sent = $running ? $node->safe_psql('postgres', "SELECT pg_cancel_backend($flusher_pid)") : 'f';
	my $err = flusher_query('SELECT 1');
	if ($sent eq 't' && $err =~ /canceling statement due to user request/)
	{
		$cancelled++;
		is($node->safe_psql('bulk', $where_counts), "$bulk_keys|0|0",
			"apikey_flush() cancelled after $after_ms ms: every count is back in memory");
	}
	else
	{
		note "the flush was not cancelled after $after_ms ms: " . ($err || 'completed');
		last;
	}
}
cmp_ok($cancelled, '>=', 1, "$cancelled flush(es) cancelled in the middle");

is(flusher_query('SELECT apikey_flush()'), '', 'a final apikey_flush() completes');
$flusher->quit;
is($node->safe_psql('bulk', $where_counts), "0|0|$bulk_keys",
	'... and wrote every count: none pending, none left in the log');
is($node->safe_psql('bulk', q{
		SELECT min(usage_count) || '/' || max(usage_count) || '/' || count(*) FROM apikey_keys}),
	"1/1/$bulk_keys", '... each key exactly once');
is($node->safe_psql('bulk', 'SELECT sum(requests) FROM apikey_usage'), $bulk_keys,
	'... and the hourly buckets agree');

$node->stop('fast');
done_testing();
