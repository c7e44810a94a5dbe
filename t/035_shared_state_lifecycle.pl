# t/035_shared_state_lifecycle.pl -- shared state that outlives what it
# belongs to, and the shutdown dump when something goes wrong around it.
#
#   (a) Dropped databases after their counts were logged.  Eight times: a
#       database is created, a session verifies a key of it and stays while
#       a visit logs the count (the journal keeps the logged records until a
#       later visit of that database prunes them), then leaves, and the
#       database is dropped.  The launcher
#       frees those journals: the pending counts' shared memory goes back
#       to nothing.  Before, no visit could ever prune them, nothing else
#       did, and each dropped database kept a journal and its 32 kB chunk
#       until every journal was taken, when every count on the server went
#       to the overflow row until a restart.
#   (b) A launcher terminated (not at a shutdown) writes the dump of this
#       run, not knowing better; apikey_flush() then logs the counts it
#       holds, and the server is stopped cleanly before the postmaster
#       restarts the launcher (10 s).  The next start counts them once, not
#       twice (before: usage_count 2000 for 1000 verifications).
#   (c) A damaged dump: a saved window with a negative count (as if a key
#       had used less than nothing of its limit) is skipped with a LOG line,
#       never gives the key more than its limit (before: VALID 10 times of
#       10 with a limit of 5).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

$PostgreSQL::Test::Utils::timeout_default = 60
  if $PostgreSQL::Test::Utils::timeout_default > 60;

my $pending_bytes_sql = q{
	SELECT value FROM apikey_metrics
	 WHERE name = 'apikey_shared_memory_bytes' AND labels->>'kind' = 'pending_counts'};

# ============================================================================
# (a) dropped databases whose counts a visit had logged
# ============================================================================
my $node = PostgreSQL::Test::Cluster->new('drops');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'apikey'
apikey.flush_interval = '200ms'
apikey.fold_interval = '1h'
log_line_prefix = '%m [%p] %b %q%a '
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION apikey');

for my $i (1 .. 8)
{
	$node->safe_psql('postgres', "CREATE DATABASE churn$i");
	$node->safe_psql("churn$i", q{
		CREATE EXTENSION apikey;
		CREATE TABLE tok AS SELECT token FROM apikey_create('org_c', 'churn');});
	# a session verifies and stays while a visit logs the count (the first
	# visit of a database folds it too: the count is in the log or the key's
	# row); the journal keeps the logged record until the next visit of the
	# database prunes it, the sweep's, in a minute
	my $session = $node->background_psql("churn$i");
	$session->query_safe('SELECT apikey_verify(token) FROM tok');
	$node->poll_query_until("churn$i", q{
		SELECT (SELECT count(*) FROM apikey_usage_log) + (SELECT sum(usage_count) FROM apikey_keys) > 0})
	  or die "no visit logged the count of churn$i";
	$session->quit;
	$node->safe_psql('postgres', "DROP DATABASE churn$i");
}
ok($node->poll_query_until('postgres', $pending_bytes_sql, '0'),
	'eight databases dropped after their counts were logged: their journals are freed')
  or diag('pending counts still hold ' . $node->safe_psql('postgres', $pending_bytes_sql) . ' bytes');

# and counting goes on per key in the database that is left
my ($k1, $t1) = split /\|/, $node->safe_psql('postgres',
	"SELECT key_id, token FROM apikey_create('org_p', 'stays')");
$node->safe_psql('postgres', "SELECT apikey_verify('$t1') FROM generate_series(1, 3)");
is($node->safe_psql('postgres', "SELECT apikey_flush() >= 0; SELECT usage_count FROM apikey_keys WHERE key_id = '$k1'"),
	"t\n3", 'the database left counts per key');
$node->stop('fast');

# ============================================================================
# (b) the dump of a terminated launcher, then a flush, then a clean stop
# ============================================================================
my $dump = PostgreSQL::Test::Cluster->new('dump');
$dump->init;
$dump->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'apikey'
apikey.workers = off
log_line_prefix = '%m [%p] %b %q%a '
});
$dump->start;
$dump->safe_psql('postgres', 'CREATE EXTENSION apikey');
my ($k2, $t2) = split /\|/, $dump->safe_psql('postgres',
	"SELECT key_id, token FROM apikey_create('org_d', 'dumped', rate_limit => 100000)");
$dump->safe_psql('postgres', "SELECT apikey_verify('$t2') FROM generate_series(1, 1000)");
my $file = $dump->data_dir . '/pg_stat/apikey.stat';
my $launcher = $dump->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'apikey launcher'");
like($launcher, qr/^\d+$/, 'the launcher runs');
kill 'TERM', $launcher;
my $t0 = time;
usleep(50_000) while !-f $file && time - $t0 < 20;
ok(-f $file, 'the terminated launcher wrote the dump of this run');
is($dump->safe_psql('postgres',
		"SELECT apikey_flush() > 0; SELECT usage_count FROM apikey_keys WHERE key_id = '$k2'"),
	"t\n1000", 'apikey_flush() logged and folded the 1000 counts');
$dump->stop('fast');    # before the launcher's restart (10 s)
$dump->start;
is($dump->safe_psql('postgres',
		"SELECT apikey_flush() >= 0; SELECT usage_count FROM apikey_keys WHERE key_id = '$k2'"),
	"t\n1000", 'after the restart the 1000 verifications are counted once, not twice');

# ============================================================================
# (c) a damaged dump cannot give a key more than its limit
# ============================================================================
my ($k3, $t3) = split /\|/, $dump->safe_psql('postgres',
	"SELECT key_id, token FROM apikey_create('org_d', 'limited', rate_limit => 5)");
is($dump->safe_psql('postgres', qq{
		SELECT string_agg(code, ',') FROM (SELECT (apikey_verify('$t3')).code
		                                     FROM generate_series(1, 3)) s}),
	'VALID,VALID,VALID', 'a key with rate_limit 5 verified 3 times');
$dump->stop('fast');
ok(-f $file, 'the clean stop wrote the dump');

# The file: a 56-byte header (six uint32, nwindows, npending, written_at,
# lifetime), then the windows: the key (dbid, key_id[65], padded to 72
# bytes), then start, usec (int64) and count (int32), 96 bytes each.
my $bytes = slurp_file($file);
my ($nwindows) = unpack('q<', substr($bytes, 24, 8));
my $damaged = 0;
for my $w (0 .. $nwindows - 1)
{
	my $off = 56 + $w * 96;
	my $key_id = unpack('Z*', substr($bytes, $off + 4, 65));
	next unless $key_id eq $k3;
	is(unpack('l<', substr($bytes, $off + 72 + 16, 4)), 3,
		'the dump holds the window, with its count of 3');
	substr($bytes, $off + 72 + 16, 4) = pack('l<', -1_000_000);
	$damaged++;
}
is($damaged, 1, "the key's window was found in the dump and damaged");
open(my $fh, '>:raw', $file) or die "could not write $file: $!";
print $fh $bytes;
close($fh);
my $log_offset = -s $dump->logfile;
$dump->start;
my $codes = $dump->safe_psql('postgres', qq{
	SELECT string_agg(code, ',') FROM (SELECT (apikey_verify('$t3')).code
	                                     FROM generate_series(1, 10)) s});
my $valid = () = $codes =~ /\bVALID\b/g;
cmp_ok($valid, '<=', 5, "the damaged window gives the key no more than its limit ($codes)");
like(slurp_file($dump->logfile, $log_offset),
	qr/apikey skipped 1 invalid records of counter file/,
	'the server log says the record was skipped');

# ---- no errors from the workers ---------------------------------------------
for my $n ($node, $dump)
{
	my @errors = grep { /(apikey (worker|launcher) .*(ERROR|PANIC):|TRAP:)/ }
	  split /\n/, slurp_file($n->logfile);
	is(scalar(@errors), 0, $n->name . ': the workers logged no ERROR')
	  or diag(join("\n", @errors));
}
$dump->stop('fast');
done_testing();
