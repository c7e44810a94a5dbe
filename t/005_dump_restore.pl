# t/005_dump_restore.pl -- pg_dump / pg_restore keep every key verifying.
#
# apikey_keys, apikey_usage, apikey_events and its sequence are configuration
# tables of the extension (pg_extension_config_dump), so their rows travel
# with a dump:
#   * pg_dump -Fc | pg_restore into a new database: tokens issued before
#     verify after (revoked stay REVOKED, scopes, metadata and usage kept);
#   * the audit trigger does not record restored keys a second time: the
#     restored apikey_events has exactly the rows of the original, and the
#     event_id sequence continues after the highest restored id;
#   * the same whatever order the tables' data arrive in (pg_restore -L with
#     apikey_keys first, pg_restore -j 4), and with plain pg_dump | psql;
#   * a 1.0 database: pg_dump does not record the extension's version, so the
#     documented procedure is to CREATE EXTENSION apikey VERSION '1.0' in the
#     target first; with it, the restored 1.0 keys verify.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
# Workers off: counts move only at apikey_flush(), so numbers are exact.
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'apikey'
apikey.workers = off
});
$node->start;

my $tmp = PostgreSQL::Test::Utils::tempdir;

# Run a client program against the node; returns (success, stdout, stderr).
sub run_prog
{
	my (@cmd) = @_;
	my ($stdout, $stderr) = ('', '');
	local %ENV = %ENV;
	$ENV{PGHOST} = $node->host;
	$ENV{PGPORT} = $node->port;
	my $ok = IPC::Run::run(\@cmd, '>', \$stdout, '2>', \$stderr);
	return ($ok, $stdout, $stderr);
}

# ---- a 2.0 database with a bit of everything ---------------------------------

$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql('src', 'CREATE EXTENSION apikey');
my (%key, %tok);
for my $spec (
	[ plain   => q{apikey_create('org_1', 'plain')} ],
	[ scoped  => q{apikey_create('org_1', 'scoped', '{documents:read,plugins:*}',
	                             metadata => '{"team": "billing"}', created_by => 'alice')} ],
	[ revoked => q{apikey_create('org_2', 'revoked')} ],
	[ old     => q{apikey_create('org_2', 'rotated away')} ],
	[ limited => q{apikey_create('org_2', 'limited', rate_limit => 2, environment => 'test')} ],
  )
{
	my ($n, $call) = @$spec;
	($key{$n}, $tok{$n}) = split /\|/, $node->safe_psql('src', "SELECT key_id, token FROM $call");
}
$node->safe_psql('src', "SELECT apikey_revoke('$key{revoked}', 'compromised')");
($key{new}, $tok{new}) = split /\|/, $node->safe_psql('src',
	"SELECT key_id, token FROM apikey_rotate('$key{old}', interval '1 hour')");
$node->safe_psql('src', qq{
	SELECT apikey_verify('$tok{plain}') FROM generate_series(1, 3);
	SELECT apikey_verify('$tok{revoked}');
	SELECT apikey_flush();
});

# Expected answers, asked in the source database.
sub answers
{
	my ($db) = @_;
	return $node->safe_psql($db, qq{
		SELECT string_agg(n || '=' || v.code || ':' || coalesce(v.org_id, '') || ':'
		                  || coalesce(v.scopes::text, '') || ':' || coalesce(v.metadata::text, ''),
		                  ' ' ORDER BY n)
		  FROM (VALUES ('plain', '$tok{plain}'), ('scoped', '$tok{scoped}'),
		               ('revoked', '$tok{revoked}'), ('old', '$tok{old}'),
		               ('new', '$tok{new}')) t(n, tok),
		       LATERAL apikey_verify(t.tok, '{documents:read}') v});
}
my $expected = answers('src');
is($expected,
	'new=VALID:org_2:{}:{} old=VALID:org_2:{}:{} plain=VALID:org_1:{}:{} '
	  . 'revoked=REVOKED::: scoped=VALID:org_1:{documents:read,plugins:*}:{"team": "billing"}',
	'the source database answers as expected');

# What the restored databases must hold, row for row.
my $keys_sql = q{
	SELECT key_id, org_id, name, hint, encode(hash, 'hex'), scopes, environment, is_active,
	       expires_at, rate_limit, rate_window, allowed_ips, metadata, created_by, created_at,
	       revoked_at, revoked_reason, last_used_at, usage_count
	  FROM apikey_keys ORDER BY key_id};
my $events_sql = q{
	SELECT event_id, at, org_id, key_id, event, actor, details FROM apikey_events ORDER BY event_id};
my $usage_sql = q{SELECT * FROM apikey_usage ORDER BY key_id, bucket};
my $src_keys = $node->safe_psql('src', $keys_sql);
my $src_events = $node->safe_psql('src', $events_sql);
my $src_usage = $node->safe_psql('src', $usage_sql);
my $src_n_events = $node->safe_psql('src', 'SELECT count(*) FROM apikey_events');
my $src_max_event = $node->safe_psql('src', 'SELECT max(event_id) FROM apikey_events');
cmp_ok($src_n_events, '>=', 7, "the source has an audit trail ($src_n_events events)");

# Everything a restored 2.0 database must show.
sub check_restored
{
	my ($db, $how) = @_;
	is(answers($db), $expected, "$how: every token answers as before (revoked stays REVOKED)");
	is($node->safe_psql($db, "SELECT (apikey_verify('$tok{limited}', client_ip => '192.0.2.1')).code"),
		'VALID', "$how: the rate-limited test key verifies");
	is($node->safe_psql($db, $keys_sql), $src_keys, "$how: apikey_keys restored row for row");
	is($node->safe_psql($db, 'SELECT count(*) FROM apikey_events'),
		$src_n_events, "$how: apikey_events has as many rows as before (no duplicate 'created' events)");
	is($node->safe_psql($db, $events_sql), $src_events, "$how: apikey_events restored row for row");
	is($node->safe_psql($db, $usage_sql), $src_usage, "$how: apikey_usage restored row for row");

	# A new event gets an id after the restored ones.
	my ($k) = $node->safe_psql($db, "SELECT key_id FROM apikey_create('org_3', 'after restore')");
	is($node->safe_psql($db, qq{
			SELECT count(*) || ':' || bool_and(event_id > $src_max_event)
			  FROM apikey_events WHERE key_id = '$k'}),
		'1:true', "$how: the event_id sequence continues after the restored events");

	# Usage continues on top of the restored counts: 3 restored, 1 from
	# answers() above, 1 more here.
	$node->safe_psql($db, "SELECT apikey_verify('$tok{plain}'); SELECT apikey_flush()");
	is($node->safe_psql($db, "SELECT usage_count FROM apikey_keys WHERE key_id = '$key{plain}'"),
		'5', "$how: usage_count continues from the restored 3");
}

# ---- custom format: pg_dump -Fc, pg_restore -------------------------------------

my ($ok, $out, $err) = run_prog('pg_dump', '-Fc', '-f', "$tmp/src.dump", '-d', 'src');
ok($ok, 'pg_dump -Fc of the 2.0 database') or diag($err);
$node->safe_psql('postgres', 'CREATE DATABASE restored');
($ok, $out, $err) = run_prog('pg_restore', '--exit-on-error', '-d', 'restored', "$tmp/src.dump");
ok($ok, 'pg_restore into a new database succeeds') or diag($err);
is($err, '', '... without errors or warnings');
check_restored('restored', 'pg_restore');

# ---- the keys' data before the events' ---------------------------------------------
#
# pg_restore -j loads the tables' data concurrently, in no fixed order, and
# pg_restore -L restores in the order of a (possibly edited) list: the keys
# may arrive before the events that record them.  First deterministically,
# with a list that puts apikey_keys first, then with -j 4.

($ok, $out, $err) = run_prog('pg_restore', '-l', "$tmp/src.dump");
ok($ok, 'pg_restore -l lists the dump') or diag($err);
my @toc = split /\n/, $out;
my @keys_data = grep { /TABLE DATA public apikey_keys / } @toc;
is(scalar(@keys_data), 1, '... with the data of apikey_keys');
my @reordered;
for my $line (@toc)
{
	next if $line =~ /TABLE DATA public apikey_keys /;
	push @reordered, @keys_data if $line =~ /TABLE DATA public apikey_events /;
	push @reordered, $line;
}
PostgreSQL::Test::Utils::append_to_file("$tmp/keys_first.list", join("\n", @reordered) . "\n");
$node->safe_psql('postgres', 'CREATE DATABASE restored_keys_first');
($ok, $out, $err) = run_prog('pg_restore', '-L', "$tmp/keys_first.list",
	'-d', 'restored_keys_first', "$tmp/src.dump");
ok($ok, 'pg_restore -L with apikey_keys before apikey_events succeeds') or diag($err);
is($err, '', '... without errors or warnings');
check_restored('restored_keys_first', 'keys first');

$node->safe_psql('postgres', 'CREATE DATABASE restored_parallel');
($ok, $out, $err) = run_prog('pg_restore', '-j', '4', '-d', 'restored_parallel', "$tmp/src.dump");
ok($ok, 'pg_restore -j 4 into a new database succeeds') or diag($err);
is($err, '', '... without errors or warnings');
check_restored('restored_parallel', 'pg_restore -j 4');

# ---- plain format: pg_dump | psql --------------------------------------------------

($ok, $out, $err) = run_prog('pg_dump', '-f', "$tmp/src.sql", '-d', 'src');
ok($ok, 'plain pg_dump of the 2.0 database') or diag($err);
$node->safe_psql('postgres', 'CREATE DATABASE restored_plain');
($ok, $out, $err) = run_prog('psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1',
	'-d', 'restored_plain', '-f', "$tmp/src.sql");
ok($ok, 'psql restores the plain dump') or diag($err);
is($err, '', '... without errors or warnings');
check_restored('restored_plain', 'plain dump');

# ---- a 1.0 database -----------------------------------------------------------------

$node->safe_psql('postgres', 'CREATE DATABASE src10');
$node->safe_psql('src10', "CREATE EXTENSION apikey VERSION '1.0'");
my ($k10, $t10) = split /\|/, $node->safe_psql('src10',
	"SELECT key_id, key FROM apikey_generate('user_7', 'legacy')");
my ($k10off, $t10off) = split /\|/, $node->safe_psql('src10',
	"SELECT key_id, key FROM apikey_generate('user_8', 'legacy off')");
$node->safe_psql('src10', qq{
	SELECT apikey_deactivate('$k10off');
	SELECT apikey_verify('$t10') FROM generate_series(1, 2);
	SELECT apikey_flush();
});
my $src10_keys = $node->safe_psql('src10', 'SELECT * FROM apikey_keys ORDER BY key_id');
my $src10_usage = $node->safe_psql('src10', 'SELECT * FROM apikey_usage ORDER BY 1, 2');

($ok, $out, $err) = run_prog('pg_dump', '-Fc', '-f', "$tmp/src10.dump", '-d', 'src10');
ok($ok, 'pg_dump -Fc of the 1.0 database') or diag($err);

# The documented procedure: create the 1.0 extension first, then restore.
$node->safe_psql('postgres', 'CREATE DATABASE restored10');
$node->safe_psql('restored10', "CREATE EXTENSION apikey VERSION '1.0'");
($ok, $out, $err) = run_prog('pg_restore', '-d', 'restored10', "$tmp/src10.dump");
ok($ok, '1.0: pg_restore into a database with CREATE EXTENSION apikey VERSION 1.0 succeeds')
  or diag($err);
is($node->safe_psql('restored10', "SELECT extversion FROM pg_extension WHERE extname = 'apikey'"),
	'1.0', '1.0: the restored database is still 1.0');
is($node->safe_psql('restored10', "SELECT valid, code, user_id FROM apikey_verify('$t10')"),
	't|VALID|user_7', '1.0: the restored key verifies VALID for its user');
is($node->safe_psql('restored10', "SELECT code FROM apikey_verify('$t10off')"),
	'REVOKED', '1.0: the deactivated key stays REVOKED');
is($node->safe_psql('restored10', 'SELECT * FROM apikey_keys ORDER BY key_id'),
	$src10_keys, '1.0: apikey_keys restored row for row');
is($node->safe_psql('restored10', 'SELECT * FROM apikey_usage ORDER BY 1, 2'),
	$src10_usage, '1.0: apikey_usage restored row for row');

# Without that step the dump cannot restore silently wrong: the 2.0 tables
# do not take the 1.0 rows, and pg_restore says so.
$node->safe_psql('postgres', 'CREATE DATABASE restored10_wrong');
($ok, $out, $err) = run_prog('pg_restore', '-d', 'restored10_wrong', "$tmp/src10.dump");
ok(!$ok, '1.0 dump restored without creating the 1.0 extension first: pg_restore fails');
like($err, qr/user_id/, '... complaining about the 1.0 column user_id');

$node->stop('fast');
done_testing();
