# t/006_no_preload.pl -- the extension on a server WITHOUT
# shared_preload_libraries = 'apikey'.
#
# The contract: management functions work, apikey_verify refuses with
# ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE (55000) and a hint that says what
# to add to postgresql.conf -- never a silent half-mode that would skip rate
# limits -- and apikey_flush() returns 0 (nothing can be pending).  Loading
# the library into a backend must not break the session either.
#
# Then the library is preloaded and both a 2.0 and a 1.0 database verify
# keys: the 1.0 SQL definitions keep working against this (the newest and
# only) library through its versioned C symbol apikey_verify_1_0.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('nopreload');
$node->init;
$node->start;

is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'),
	'', 'the node does not preload apikey');

# Runs SQL; returns (exit code, stdout, stderr) without dying.
sub try_sql
{
	my ($db, $sql) = @_;
	my ($ret, $out, $err) = $node->psql($db, $sql);
	return ($ret, $out // '', $err // '');
}

# ---- 2.0 without the preload ------------------------------------------------

my ($key_id, $token);
{
	my ($ret, $out, $err) = try_sql('postgres', 'CREATE EXTENSION apikey');
	is($ret, 0, 'CREATE EXTENSION apikey works without the preload')
	  or diag("CREATE EXTENSION failed: $err");
}
SKIP:
{
	skip 'the extension could not be created without the preload', 17
	  unless $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_extension WHERE extname = 'apikey'") eq '1';

	is($node->safe_psql('postgres',
			"SELECT extversion FROM pg_extension WHERE extname = 'apikey'"),
		$node->safe_psql('postgres',
			"SELECT default_version FROM pg_available_extensions WHERE name = 'apikey'"),
		'... and installs the default version');

	# Management functions need no shared memory.
	my ($ret, $out, $err) = try_sql('postgres',
		"SELECT key_id, token FROM apikey_create('org_np', 'no preload key')");
	is($ret, 0, 'apikey_create works without the preload')
	  or diag("apikey_create failed: $err");
	($key_id, $token) = split /\|/, $out;
	like($token // '', qr/^ak_live_[0-9A-Za-z]{38}$/,
		'... and returns a token of the 2.0 format');
	($ret, $out, $err) = try_sql('postgres',
		"SELECT apikey_revoke(key_id, 'test') FROM apikey_create('org_np', 'to revoke')");
	is($out, 't', 'apikey_revoke works without the preload')
	  or diag("apikey_revoke failed: $err");

	# apikey_verify refuses: SQLSTATE 55000 and a hint naming the setting.
	# For a good token, a garbage one and a NULL alike: there is no half-mode.
	for my $case (["'" . ($token // '') . "'", 'a valid token'],
		["'garbage'", 'a malformed token'],
		['NULL', 'a NULL token'])
	{
		my ($arg, $what) = @$case;
		($ret, $out, $err) = try_sql('postgres',
			"\\set VERBOSITY verbose\nSELECT * FROM apikey_verify($arg)");
		isnt($ret, 0, "apikey_verify of $what fails without the preload");
		like($err,
			qr/ERROR:  55000: apikey must be loaded via shared_preload_libraries/,
			"... with SQLSTATE 55000 (object_not_in_prerequisite_state) for $what");
		like($err, qr/HINT:  .*shared_preload_libraries = 'apikey'/,
			"... and a hint saying what to put in postgresql.conf for $what");
	}

	# apikey_flush: nothing can be pending without shared memory.
	($ret, $out, $err) = try_sql('postgres', 'SELECT apikey_flush()');
	is($out, '0', 'apikey_flush() returns 0 without the preload')
	  or diag("apikey_flush failed: $err");

	# ---- 1.0 without the preload --------------------------------------------
	$node->safe_psql('postgres', 'CREATE DATABASE legacy_np');
	($ret, $out, $err) = try_sql('legacy_np', "CREATE EXTENSION apikey VERSION '1.0'");
	is($ret, 0, 'CREATE EXTENSION apikey VERSION 1.0 works without the preload')
	  or diag("failed: $err");
	($ret, $out, $err) = try_sql('legacy_np',
		"SELECT key FROM apikey_generate('user_1', 'legacy key')");
	like($out, qr/^ak_live_[0-9A-Za-z]{38}$/,
		'1.0 apikey_generate works without the preload');
	my $token_np = $out;
	($ret, $out, $err) = try_sql('legacy_np',
		"\\set VERBOSITY verbose\nSELECT * FROM apikey_verify('$token_np')");
	isnt($ret, 0, '1.0 apikey_verify fails without the preload');
	like($err, qr/ERROR:  55000: .*shared_preload_libraries/,
		'... with SQLSTATE 55000 as well');
}

# ---- now preload the library: both versions verify -------------------------

$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'apikey'\napikey.workers = off\n");
$node->restart;

if (defined $token && $token ne '')
{
	is($node->safe_psql('postgres', "SELECT (apikey_verify('$token')).code"),
		'VALID', 'with the preload, the 2.0 token issued before verifies VALID');
}

# A 1.0 database, served by the newest library (the only one installed).
$node->safe_psql('postgres', 'CREATE DATABASE legacy');
$node->safe_psql('legacy', "CREATE EXTENSION apikey VERSION '1.0'");
is($node->safe_psql('legacy',
		"SELECT extversion FROM pg_extension WHERE extname = 'apikey'"),
	'1.0', 'a 1.0 database');
my ($key1_id, $token1) = split /\|/, $node->safe_psql('legacy',
	"SELECT key_id, key FROM apikey_generate('user_1', 'legacy key')");
like($token1, qr/^ak_live_[0-9A-Za-z]{38}$/,
	'1.0 apikey_generate issues a token in the shared format');

# The 1.0 SQL function is bound to the versioned C symbol of this library.
is($node->safe_psql('legacy',
		"SELECT prosrc FROM pg_proc WHERE proname = 'apikey_verify'"),
	'apikey_verify_1_0', '1.0 apikey_verify calls the C symbol apikey_verify_1_0');
is($node->safe_psql('legacy',
		"SELECT valid, code, key_id = '$key1_id', user_id FROM apikey_verify('$token1')"),
	't|VALID|t|user_1',
	'the 1.0 database verifies its key with the newest library, no update needed');
is($node->safe_psql('legacy', "SELECT code FROM apikey_verify('ak_live_nope')"),
	'MALFORMED', '1.0 apikey_verify answers MALFORMED for a bad token');
is($node->safe_psql('legacy', "SELECT apikey_deactivate('$key1_id')"),
	't', '1.0 apikey_deactivate works');
is($node->safe_psql('legacy', "SELECT code FROM apikey_verify('$token1')"),
	'REVOKED', '... and the deactivated 1.0 key is REVOKED');
is($node->safe_psql('legacy', 'SELECT apikey_flush() > 0'),
	't', '1.0 apikey_flush() writes the pending counts of the key');
is($node->safe_psql('legacy',
		"SELECT usage_count FROM apikey_keys WHERE key_id = '$key1_id'"),
	'1', '... one VALID verification reached usage_count');
is($node->safe_psql('legacy',
		"SELECT sum(requests) || '/' || sum(denied) FROM apikey_usage WHERE key_id = '$key1_id'"),
	'1/1', '... and apikey_usage holds 1 request and 1 denial');

$node->stop('fast');
done_testing();
