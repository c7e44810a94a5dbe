# t/031_shared_memory_limits.pl -- memory that follows use, and limits that
# never fail open (issue 16, items 1 and 2).
#
#   (a) At the bound.  apikey.max_tracked_keys = 100 (SIGHUP), workers off:
#       300 keys with rate_limit => 5 are verified once each, so that no more
#       windows can be tracked; then a key with rate_limit => 5 verified 20
#       times is VALID at most 5 times (before the fix: 20 of 20) and
#       otherwise RATE_LIMITED with rate_remaining 0 and a rate_reset in the
#       future; the server log has the WARNING naming apikey.max_tracked_keys
#       at most once a minute; unlimited keys are still VALID, and every
#       verification is still counted (apikey_stats, overflow row included).
#       Raising the bound with a reload tracks the key again.
#   (b) Dynamic shared memory exhausted below the bound.  The server runs
#       with a /dev/shm of its own, a tmpfs of 2.5 MB (a new mount namespace
#       made with unshare, entered by the postmaster; see start_with_shm):
#       15,000 rate-limited keys verified once each.  Verification never
#       raises an ERROR; the keys whose windows did not fit are RATE_LIMITED;
#       unlimited keys stay VALID; the log says memory ran out.  Once
#       windows end (the keys' rate_window set to 1 second by UPDATE, then
#       used once more), memory frees and keys are tracked again.
#   (c) Memory follows use: with a 64 MB /dev/shm (a default container's),
#       1,000 rate-limited keys in use hold well under 16 MB of shared
#       memory (the 'apikey area' allocation plus what the server's
#       /dev/shm holds); the figures are printed.
#
# (b) and (c) need unprivileged user and mount namespaces (unshare); where
# they are not available they are skipped, with the reason.
#
# Tokens stay in the database: keys are created into tables (or, for the
# thousands of keys, written straight into apikey_keys with tokens without
# the "ak" prefix, which are looked up by hash like imported keys).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

# Wait until QUERY returns EXPECTED on NODE, for at most SECONDS.
sub poll_until
{
	my ($node, $query, $expected, $seconds) = @_;
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

# ============================================================================
# (a) at apikey.max_tracked_keys
# ============================================================================
my $node = PostgreSQL::Test::Cluster->new('bound');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'apikey'
apikey.max_tracked_keys = 100
apikey.workers = off
log_line_prefix = '%m [%p] %b %q%a '
});
$node->start;
my $t_start = time;

$node->safe_psql('postgres', q{
	CREATE EXTENSION apikey;
	CREATE TABLE crowd AS
	  SELECT k.* FROM generate_series(1, 300) g, apikey_create('org_m', 'crowd ' || g, rate_limit => 5) k;
	CREATE TABLE tok (name text PRIMARY KEY, key_id text NOT NULL, token text NOT NULL);
	INSERT INTO tok SELECT 'limited', k.* FROM apikey_create('org_m', 'limited', rate_limit => 5) k;
	INSERT INTO tok SELECT 'unlimited', k.* FROM apikey_create('org_m', 'unlimited', rate_limit => 0) k;
});

my $crowd = $node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE v.code = 'VALID') || '/' ||
	       count(*) FILTER (WHERE v.code = 'RATE_LIMITED') || '/' || count(*)
	  FROM crowd c, apikey_verify(c.token) v});
my ($crowd_valid, $crowd_limited, $crowd_all) = split m{/}, $crowd;
note "300 keys with rate_limit 5, verified once each: $crowd_valid VALID, $crowd_limited RATE_LIMITED";
cmp_ok($crowd_valid, '<=', 100, 'at most 100 (max_tracked_keys) of them got a window and were admitted');
is($crowd_valid + $crowd_limited, 300, '... the others were refused RATE_LIMITED, none failed open');

# Verify KEY n times; each call depends on g, so each is a call of its own.
sub verify_n
{
	my ($node, $key, $n) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT v.code || ':' || coalesce(v.rate_remaining::text, '-') || ':'
		       || coalesce((v.rate_reset > now())::text, '-')
		  FROM generate_series(1, $n) g,
		       apikey_verify((SELECT t.token FROM tok t WHERE t.name = '$key' AND g > 0)) v
		 ORDER BY g});
}

my @answers = split /\n/, verify_n($node, 'limited', 20);
is(scalar(@answers), 20, 'the key with rate_limit 5 verified 20 times');
my $admitted = grep { /^VALID:/ } @answers;
cmp_ok($admitted, '<=', 5, "it was admitted $admitted times: never past its limit");
is(scalar(grep { !/^VALID:/ && $_ ne 'RATE_LIMITED:0:true' } @answers), 0,
	'every other answer is RATE_LIMITED with rate_remaining 0 and a rate_reset in the future')
  or diag(join("\n", @answers));

is(verify_n($node, 'unlimited', 10), join("\n", ('VALID:-:-') x 10),
	'an unlimited key is still admitted every time');
is($node->safe_psql('postgres',
		'SELECT coalesce(sum(requests), 0) + coalesce(sum(denied), 0) FROM apikey_stats'),
	300 + 20 + 10, 'every verification is counted (apikey_stats, overflow row included)');

my $log = slurp_file($node->logfile);
my $warnings = () = $log =~ /WARNING:\s+apikey cannot track more rate-limit windows/g;
my $minutes = int((time - $t_start) / 60) + 1;
cmp_ok($warnings, '>=', 1, 'the server log has the WARNING about untracked windows');
cmp_ok($warnings, '<=', $minutes, "... at most once a minute ($warnings in $minutes started minute(s))");
like($log, qr/apikey cannot track more rate-limit windows.*\n.*DETAIL:.*apikey\.max_tracked_keys is 100.*\n.*HINT:\s+Raise apikey\.max_tracked_keys/,
	'... naming apikey.max_tracked_keys and what to do');

# The bound is a SIGHUP setting: raised, the key gets a window at once.
$node->append_conf('postgresql.conf', "apikey.max_tracked_keys = 1000\n");
$node->reload;
poll_until($node, 'SHOW apikey.max_tracked_keys', '1000') or die;
like(verify_n($node, 'limited', 1), qr/^VALID:[0-4]:true$/,
	'after raising apikey.max_tracked_keys the limited key is tracked and admitted again');

# ---- pending counts: sessions' journals -------------------------------------
#
# Each session appends its counts to a journal of its own; a session that
# ends leaves it to the flushes, and the next session of the database takes
# it over.  60 connections, one after another, each verifying the unlimited
# key once: every count is pending, exactly, and the journals hold at most
# two 32 kB chunks (one per journal would be 60).
my $pending_sql = q{
	SELECT coalesce((SELECT s.requests FROM apikey_stats s JOIN tok USING (key_id)
	                  WHERE tok.name = 'unlimited'), 0)};
my $before = $node->safe_psql('postgres', $pending_sql);
$node->safe_psql('postgres',
	q{SELECT code FROM apikey_verify((SELECT token FROM tok WHERE name = 'unlimited'))})
  for 1 .. 60;
is($node->safe_psql('postgres', $pending_sql), $before + 60,
	'60 sessions one after another: all 60 counts are pending, exactly');
my $chunk_bytes = $node->safe_psql('postgres', q{
	SELECT value FROM apikey_metrics
	 WHERE name = 'apikey_shared_memory_bytes' AND labels->>'kind' = 'pending_counts'});
note "pending counts hold $chunk_bytes bytes after 60 sessions";
cmp_ok($chunk_bytes, '<=', 2 * 32768,
	'... in at most two chunks: each new session took over the journal the last one left');

# The bound: apikey.max_tracked_keys (now 1000) records, plus a chunk per
# journal.  2,000 keys verified once each in one session find room for
# fewer than 2,000 records; the rest go to the overflow row, counted.
# Workers are off: two flushes (the second frees what the first logged,
# once every snapshot sees it) make room again.
$node->safe_psql('postgres', q{
	CREATE TABLE many AS
	  SELECT k.* FROM generate_series(1, 2000) g, apikey_create('org_m', 'many ' || g, rate_limit => 0) k;
	SELECT apikey_flush(); });
$node->safe_psql('postgres', 'SELECT apikey_flush()');
my $overflow_sql = q{SELECT coalesce(sum(requests), 0) FROM apikey_stats WHERE overflow};
my $overflow_before = $node->safe_psql('postgres', $overflow_sql);
is($node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE v.code = 'VALID') FROM many m, apikey_verify(m.token) v}),
	'2000', '2,000 keys verified once each, all VALID');
my $tracked = $node->safe_psql('postgres', q{
	SELECT coalesce(sum(s.requests), 0) FROM apikey_stats s WHERE s.key_id IN (SELECT key_id FROM many)});
my $overflow = $node->safe_psql('postgres', $overflow_sql) - $overflow_before;
note "2,000 keys verified: $tracked counted per key, $overflow in the overflow row";
cmp_ok($tracked, '<', 2000, 'past the bound, counts are not kept per key');
cmp_ok($tracked, '>=', 1000, '... but at least apikey.max_tracked_keys of them are');
is($tracked + $overflow, 2000, '... and every verification is counted (overflow row included)');
$node->safe_psql('postgres', 'SELECT apikey_flush()');
$node->safe_psql('postgres', 'SELECT apikey_flush()');
is($node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE v.code = 'VALID') FROM many m, apikey_verify(m.token) v
	 WHERE m.key_id IN (SELECT key_id FROM many ORDER BY key_id LIMIT 500);
	SELECT coalesce(sum(s.requests), 0) FROM apikey_stats s WHERE s.key_id IN (SELECT key_id FROM many)}),
	"500\n500", 'after two flushes the chunks are free: 500 more keys are counted per key');

# A session adds to its own unflushed record of a key instead of appending
# another, wherever in its journal that record is: 500 keys verified three
# times round-robin (1,500 verifications, records over three chunks) leave
# about 500 records, not 1,500, and every verification is counted.  (Not
# exactly 500: the session's index has 1,024 sets of four ways for this few
# keys, and when five of the 500 share a set, which happens in about one
# run in seven, those five take turns and get a record each per round.)
$node->safe_psql('postgres', 'SELECT apikey_flush()') for 1 .. 2;
my $records_sql = q{
	SELECT value FROM apikey_metrics
	 WHERE name = 'apikey_tracked_keys' AND labels->>'kind' = 'pending_counts'};
my $records_before = $node->safe_psql('postgres', $records_sql);
is($node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE v.code = 'VALID')
	  FROM (SELECT m.token FROM generate_series(1, 3) r,
	               (SELECT token, key_id FROM many ORDER BY key_id LIMIT 500) m
	         ORDER BY r, m.key_id OFFSET 0) x,
	       LATERAL apikey_verify(x.token) v}),
	'1500', '500 keys verified three times round-robin, all VALID');
my $records_added = $node->safe_psql('postgres', $records_sql) - $records_before;
ok($records_added >= 500 && $records_added <= 550,
	"... leave about one pending record per key: the session added to its earlier records ($records_added)");
is($node->safe_psql('postgres', q{
	SELECT coalesce(sum(s.requests), 0) FROM apikey_stats s WHERE s.key_id IN (SELECT key_id FROM many)}),
	'1500', '... and all 1,500 verifications are counted per key');
$node->stop('fast');

# ============================================================================
# A server with its own /dev/shm
# ============================================================================

# Start NODE's postmaster in a mount namespace of its own, with a tmpfs of
# SIZE on /dev/shm.  unshare --map-root-user makes us root in a new user
# namespace, where tmpfs can be mounted; a second user namespace maps us back
# to our own uid, because the postmaster refuses to run as root.  pg_ctl
# and its postmaster stay in the new mount namespace; everything else (the
# data directory, the socket directory) is shared.
sub start_with_shm
{
	my ($node, $size) = @_;
	my ($gid) = split ' ', $(;
	my $ret = PostgreSQL::Test::Utils::system_log(
		'unshare', '--user', '--map-root-user', '--mount', 'sh', '-c',
		'mount -t tmpfs -o size="$1" tmpfs /dev/shm &&'
		  . ' exec unshare --user --map-user="$2" --map-group="$3"'
		  . ' pg_ctl -w -D "$4" -l "$5" -o "--cluster-name=$6" start',
		'sh', $size, $<, $gid, $node->data_dir, $node->logfile, $node->name);
	return 0 if $ret != 0;
	$node->_update_pid(1);
	return 1;
}

my $can_unshare = PostgreSQL::Test::Utils::system_log(
	'unshare', '--user', '--map-root-user', '--mount', 'sh', '-c',
	'mount -t tmpfs -o size=1m tmpfs /dev/shm && exec unshare --user --map-user="$1" true',
	'sh', $<) == 0;

SKIP:
{
	skip 'unprivileged user and mount namespaces (unshare) are not available here', 1
	  unless $can_unshare;

	my $shm = PostgreSQL::Test::Cluster->new('shm');
	$shm->init;
	$shm->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'apikey'
dynamic_shared_memory_type = posix
max_parallel_workers_per_gather = 0
apikey.workers = off
log_line_prefix = '%m [%p] %b %q%a '
});

	# Keys written straight into the table (with the audit trigger off, for
	# speed): 'zz_live_<set>_<n>' are their tokens.
	my $make_keys = sub {
		my ($set, $n, $limit) = @_;
		$shm->safe_psql('postgres', qq{
			BEGIN;
			ALTER TABLE apikey_keys DISABLE TRIGGER USER;
			INSERT INTO apikey_keys (key_id, org_id, name, hint, hash, environment, scopes,
			                         metadata, rate_limit, rate_window, is_active, created_at,
			                         usage_count)
			SELECT '${set}_' || g, 'org_shm', '$set ' || g, 'zz_live_',
			       sha256(convert_to('zz_live_${set}_' || g, 'UTF8')), 'live', '{}', '{}',
			       $limit, interval '1 hour', true, now(), 0
			  FROM generate_series(1, $n) g;
			ALTER TABLE apikey_keys ENABLE TRIGGER USER;
			COMMIT;});
	};
	# codes of one verification of each key of a set, e.g. "VALID 700, RATE_LIMITED 300"
	my $verify_set = sub {
		my ($set, $n) = @_;
		my ($ret, $out, $err) = $shm->psql('postgres', qq{
			SELECT string_agg(code || ' ' || n, ', ' ORDER BY code)
			  FROM (SELECT v.code, count(*) AS n
			          FROM generate_series(1, $n) g, apikey_verify('zz_live_${set}_' || g) v
			         GROUP BY v.code) c});
		return ($ret, $out, $err);
	};
	# bytes in the server's own /dev/shm
	my $shm_bytes = q{
		SELECT coalesce(sum((pg_stat_file('/dev/shm/' || f)).size), 0) FROM pg_ls_dir('/dev/shm') f};
	my $area_bytes = q{
		SELECT size FROM pg_shmem_allocations WHERE name = 'apikey area'};

	# ---- (c) a thousand keys hold a few MB at most ------------------------------
	ok(start_with_shm($shm, '64m'), 'the server starts with a 64 MB /dev/shm of its own');
	$shm->safe_psql('postgres', 'CREATE EXTENSION apikey');
	$make_keys->('thousand', 1000, 100);
	my $before = $shm->safe_psql('postgres', $shm_bytes);
	my ($ret, $out, $err) = $verify_set->('thousand', 1000);
	is($out, 'VALID 1000', '1,000 rate-limited keys verified once each, all VALID');
	my $after = $shm->safe_psql('postgres', $shm_bytes);
	my $area = $shm->safe_psql('postgres', $area_bytes);
	note sprintf('shared memory for 1,000 keys in use: the apikey area\'s %d kB in the main segment, '
		  . '/dev/shm %d kB before and %d kB after', $area / 1024, $before / 1024, $after / 1024);
	cmp_ok($area + $after, '<', 16 * 1024 * 1024,
		'they hold less than 16 MB of shared memory (apikey area + /dev/shm)');
	# what the extension says of itself, where its version has apikey_metrics
	if ($shm->safe_psql('postgres', q{SELECT to_regclass('apikey_metrics') IS NOT NULL}) eq 't')
	{
		note "apikey_metrics:\n" . $shm->safe_psql('postgres', q{
			SELECT string_agg(name || coalesce(' ' || labels::text, '') || ' = ' || value, E'\n'
			                  ORDER BY name, labels::text)
			  FROM apikey_metrics WHERE name LIKE 'apikey\_shared\_memory%' OR name LIKE 'apikey\_tracked%'});
	}
	$shm->stop('fast');

	# ---- (b) /dev/shm runs out -----------------------------------------------------
	# (c)'s 1,000 one-hour windows were saved at its clean shutdown and would
	# be loaded again, holding memory (b) expects to free; (b) starts afresh.
	unlink($shm->data_dir . '/pg_stat/apikey.stat');
	ok(start_with_shm($shm, '2500k'), 'the server starts with a 2.5 MB /dev/shm of its own');
	my $log_offset = -s $shm->logfile;
	$make_keys->('many', 15000, 100);
	$shm->safe_psql('postgres', q{
		CREATE TABLE tok (name text PRIMARY KEY, key_id text NOT NULL, token text NOT NULL);
		INSERT INTO tok SELECT 'unlimited', k.* FROM apikey_create('org_shm', 'unlimited', rate_limit => 0) k;
	});
	($ret, $out, $err) = $verify_set->('many', 15000);
	is($ret, 0, '15,000 rate-limited keys verified once each: no ERROR');
	unlike($err // '', qr/ERROR/, '... none at all') or diag($err);
	my ($valid) = ($out // '') =~ /VALID (\d+)/;
	my ($limited) = ($out // '') =~ /RATE_LIMITED (\d+)/;
	note "with 2.5 MB of /dev/shm: $out";
	cmp_ok($limited // 0, '>', 0, 'the keys whose windows did not fit were refused RATE_LIMITED');
	cmp_ok($valid // 0, '>', 0, '... the others admitted');
	is(($valid // 0) + ($limited // 0), 15000, '... and nothing else');
	is(verify_n($shm, 'unlimited', 3), "VALID:-:-\nVALID:-:-\nVALID:-:-",
		'an unlimited key is admitted while memory is exhausted');
	my $shm_log = slurp_file($shm->logfile, $log_offset);
	like($shm_log, qr/apikey ran out of dynamic shared memory/, 'the log says memory ran out');
	unlike($shm_log, qr/\bERROR:/, '... and nothing raised an ERROR for it');

	# Windows end: a 1-second window for every key, used once more so that
	# the running (1-hour) windows restart as 1-second ones; the launcher
	# then removes them as they end, and memory frees.  The pending counts
	# of all those verifications hold memory too, until a flush logs them
	# (and, memory having run out, frees their entries at once): the poll
	# flushes first, as the workers (off here) would.  Without that, pending
	# entries can take the room the ended windows leave (seen under ASan).
	$shm->safe_psql('postgres', q{
		ALTER TABLE apikey_keys DISABLE TRIGGER USER;
		UPDATE apikey_keys SET rate_window = interval '1 second' WHERE key_id LIKE 'many\_%';
		ALTER TABLE apikey_keys ENABLE TRIGGER USER;});
	$verify_set->('many', 15000);
	# keys refused in the first round, now VALID: a rate-limited key is only
	# admitted with a window tracked for it
	ok(poll_until($shm, q{
			SELECT apikey_flush() >= 0 AS flushed;
			SELECT count(*) FILTER (WHERE v.code = 'VALID')
			  FROM generate_series(14801, 15000) g, apikey_verify('zz_live_many_' || g) v},
			"t\n200", 60),
		'once windows end, memory frees and new windows are tracked again')
	  or diag($shm->safe_psql('postgres', q{
			SELECT string_agg(name || coalesce(' ' || labels::text, '') || ' = ' || value, E'\n'
			                  ORDER BY name, labels::text)
			  FROM apikey_metrics WHERE name LIKE 'apikey\_shared\_memory%' OR name LIKE 'apikey\_tracked%'}));
	$shm->stop('fast');
}

done_testing();
