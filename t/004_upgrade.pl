# t/004_upgrade.pl -- the org migration: ALTER EXTENSION apikey UPDATE TO
# '2.0' (the released 1.0 -> 2.0 script) and '2.1' (from the security
# release 1.1), their rollbacks, the update paths, schema equality and scale.
#
#   * 1.0 with users in several organizations, a user without one, a key of a
#     user that no longer exists, expired and inactive keys and usage history
#     -> update: every mapped token verifies VALID with its org_id (expired
#     stays EXPIRED, inactive REVOKED), orphans are deleted with an
#     orphan_deleted event each, the WARNING has the right counts, usage
#     history is kept;
#   * apikey.org_mapping unset / failing / wrong columns: an ERROR with a hint
#     and nothing changed (still 1.0, still verifying);
#   * 1.0 -> 2.0 -> 1.0 -> 2.0: scoped keys are deactivated on the way down
#     with a WARNING; a key without created_by stops the downgrade;
#   * the same round trip through the security release: 2.0 -> 2.1 -> 1.1
#     -> 2.1, every token verifying at each step;
#   * pg_extension_update_paths lists the paths, and none back to 2.0;
#   * a fresh install (2.1), 1.0 -> 2.0 -> 2.1 and 1.0 -> 1.1 -> 2.1 have the
#     same catalog (member objects compared one by one) and the same
#     pg_dump --schema-only;
#   * 100,000 keys migrate (the time is reported).
#
# The workers are off on this node so that counts move only at apikey_flush()
# and the expected numbers are exact (t/001 and t/002 cover the workers).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'apikey'
apikey.workers = off
});
$node->start;

# Runs SQL; returns (exit code, stdout, stderr) without dying.
sub try_sql
{
	my ($db, $sql) = @_;
	my ($ret, $out, $err) = $node->psql($db, $sql);
	return ($ret, $out // '', $err // '');
}

my $mapping_sql =
  "SET apikey.org_mapping = 'SELECT id::text AS user_id, organization_id::text AS org_id FROM users';\n";

# ============================================================================
# A 1.0 database with everything a migration meets.
# ============================================================================
$node->safe_psql('postgres', 'CREATE DATABASE legacy');
$node->safe_psql('legacy', qq{
	CREATE TABLE users (id integer PRIMARY KEY, organization_id integer);
	INSERT INTO users VALUES (1, 10), (2, 10), (3, 20), (4, 30), (5, NULL);
	CREATE EXTENSION apikey VERSION '1.0';
});

# name => [user_id, key name, extra apikey_generate arguments]
my %spec = (
	a => [ '1', 'alpha', '' ],
	b => [ '2', 'beta', '' ],
	c => [ '3', 'gamma', ", environment => 'test'" ],
	d => [ '4', 'delta', ', rate_limit_per_hour => 5' ],
	e => [ '5', 'no org', '' ],                                   # org NULL: orphan
	f => [ '99', 'gone user', '' ],                               # no such user: orphan
	g => [ '1', 'expired', ", expires_at => now() + interval '1 day'" ],
	h => [ '3', 'inactive', '' ],
);
my %key;    # name => key_id
my %tok;    # name => token
for my $n (sort keys %spec)
{
	my ($user, $kname, $extra) = @{ $spec{$n} };
	($key{$n}, $tok{$n}) = split /\|/, $node->safe_psql('legacy',
		"SELECT key_id, key FROM apikey_generate('$user', '$kname'$extra)");
}
$node->safe_psql('legacy', qq{
	UPDATE apikey_keys SET expires_at = now() - interval '1 hour' WHERE key_id = '$key{g}';
	SELECT apikey_deactivate('$key{h}');
});

# 1.0 verification: "valid|code|user_id".
sub verify10
{
	my ($db, $n) = @_;
	return $node->safe_psql($db,
		"SELECT valid, code, user_id FROM apikey_verify('$tok{$n}')");
}

# 2.0 verification: "code|org_id".
sub verify20
{
	my ($db, $n, $extra) = @_;
	$extra //= '';
	return $node->safe_psql($db,
		"SELECT code, org_id FROM apikey_verify('$tok{$n}'$extra)");
}

# Usage history: a 3x, b 2x, d 1x, e 1x VALID; g (EXPIRED), h (REVOKED) denied.
my %uses = (a => 3, b => 2, d => 1, e => 1, g => 1, h => 1);
for my $n (sort keys %uses)
{
	verify10('legacy', $n) for 1 .. $uses{$n};
}
is(verify10('legacy', 'g'), 'f|EXPIRED|', '1.0: the expired key is EXPIRED');
is(verify10('legacy', 'h'), 'f|REVOKED|', '1.0: the inactive key is REVOKED');
$node->safe_psql('legacy', 'SELECT apikey_flush()');
is($node->safe_psql('legacy',
		"SELECT usage_count FROM apikey_keys WHERE key_id = '$key{a}'"),
	'3', '1.0: usage history written');

# ---- error paths: nothing changes ----------------------------------------------

# After each failed update: still 1.0, every key still there and verifying.
sub still_10
{
	my ($what) = @_;
	is($node->safe_psql('legacy',
			"SELECT extversion FROM pg_extension WHERE extname = 'apikey'"),
		'1.0', "$what: the extension is still 1.0");
	is($node->safe_psql('legacy',
			"SELECT count(*) || '/' || (to_regclass('apikey_events') IS NULL) FROM apikey_keys"),
		'8/true', "$what: all 8 keys are there and no 2.0 table was left behind");
	is(verify10('legacy', 'b'), 't|VALID|2', "$what: a 1.0 token still verifies");
}

my ($ret, $out, $err) = try_sql('legacy', "ALTER EXTENSION apikey UPDATE TO '2.0'");
isnt($ret, 0, 'update without apikey.org_mapping fails');
like($err, qr/ERROR:  apikey\.org_mapping is not set/, '... saying the mapping is not set');
like($err, qr/HINT:  .*SET apikey\.org_mapping = /, '... with a hint showing how to set it');
still_10('mapping unset');

($ret, $out, $err) = try_sql('legacy', qq{
	SET apikey.org_mapping = 'SELECT id::text AS user_id, org::text AS org_id FROM no_such_table';
	ALTER EXTENSION apikey UPDATE TO '2.0'});
isnt($ret, 0, 'update with a failing mapping query fails');
like($err, qr/ERROR:  apikey\.org_mapping query failed: .*no_such_table/,
	'... naming the query error');
like($err, qr/HINT:  .*SET apikey\.org_mapping = /, '... with a hint');
still_10('failing mapping');

($ret, $out, $err) = try_sql('legacy', qq{
	SET apikey.org_mapping = 'SELECT id::text AS uid, organization_id::text AS org FROM users';
	ALTER EXTENSION apikey UPDATE TO '2.0'});
isnt($ret, 0, 'update with a mapping of the wrong columns fails');
like($err, qr/ERROR:  apikey\.org_mapping must return exactly the columns user_id and org_id/,
	'... naming the expected columns');
like($err, qr/HINT:  .*SET apikey\.org_mapping = /, '... with a hint');
still_10('wrong columns');

($ret, $out, $err) = try_sql('legacy', qq{
	SET apikey.org_mapping = 'SELECT id::text AS user_id, organization_id::text AS org_id FROM users
	                          UNION ALL SELECT ''1'', ''77''';
	ALTER EXTENSION apikey UPDATE TO '2.0'});
isnt($ret, 0, 'update with a mapping that puts a user in two organizations fails');
like($err, qr/ERROR:  .*maps user 1 to 2 organizations/, '... naming the user');
still_10('ambiguous mapping');

# ---- the update ------------------------------------------------------------------

$node->safe_psql('legacy', 'SELECT apikey_flush()');
# What must survive, per mapped key (everything but the ownership columns).
my $cols = 'key_id, name, hint, encode(hash, \'hex\'), environment, is_active, expires_at,
            rate_limit, rate_window, allowed_ips, created_at, last_used_at, usage_count';
my $mapped = join(',', map { "'$key{$_}'" } qw(a b c d g h));
my $keys_before = $node->safe_psql('legacy',
	"SELECT $cols FROM apikey_keys WHERE key_id IN ($mapped) ORDER BY key_id");
my $usage_before = $node->safe_psql('legacy',
	"SELECT key_id, bucket, requests, denied FROM apikey_usage WHERE key_id IN ($mapped) ORDER BY 1, 2");
my %usage_count_before = map { split /\|/ } split /\n/, $node->safe_psql('legacy',
	'SELECT key_id, usage_count FROM apikey_keys');
# Counts still pending in shared memory across the update: 2 for "a".
verify10('legacy', 'a') for 1 .. 2;

($ret, $out, $err) = try_sql('legacy', $mapping_sql . "ALTER EXTENSION apikey UPDATE TO '2.0'");
is($ret, 0, 'ALTER EXTENSION apikey UPDATE TO 2.0 with the mapping succeeds') or diag($err);
like($err, qr/WARNING:  API KEY MIGRATION WARNING/, 'the update warns: API KEY MIGRATION WARNING');
like($err, qr/Migrated 6 API key\(s\) from user ownership to organization ownership/,
	'... counting 6 migrated keys');
like($err, qr/Deleted 2 orphaned key\(s\)/, '... and 2 deleted orphans');
like($err, qr/ACTION REQUIRED: review your API keys/, '... and says ACTION REQUIRED');
like($err, qr/SELECT key_id, org_id, created_by, .* FROM .*apikey_keys/,
	'... with the query to review them');

is($node->safe_psql('legacy',
		"SELECT extversion FROM pg_extension WHERE extname = 'apikey'"),
	'2.0', 'the extension is 2.0');

# Every mapped token verifies with its organization.
is(verify20('legacy', 'a'), 'VALID|10', 'user 1 key: VALID in org 10');
is(verify20('legacy', 'b'), 'VALID|10', 'user 2 key: VALID in org 10');
is(verify20('legacy', 'c'), 'VALID|20', 'user 3 key: VALID in org 20');
is(verify20('legacy', 'd'), 'VALID|30', 'user 4 key: VALID in org 30');
is($node->safe_psql('legacy',
		"SELECT environment, rate_limit FROM apikey_verify('$tok{c}')"),
	'test|1000', 'the environment is kept');
is($node->safe_psql('legacy',
		"SELECT rate_limit, rate_remaining < 5 FROM apikey_verify('$tok{d}')"),
	'5|t', 'the rate limit (5 per hour) is kept');
is(verify20('legacy', 'g'), 'EXPIRED|', 'the expired key stays EXPIRED');
is(verify20('legacy', 'h'), 'REVOKED|', 'the inactive key stays REVOKED');
is(verify20('legacy', 'e'), 'NOT_FOUND|', 'the key of the user without organization is gone');
is(verify20('legacy', 'f'), 'NOT_FOUND|', 'the key of the vanished user is gone');
is($node->safe_psql('legacy',
		"SELECT code FROM apikey_verify('$tok{a}', '{anything:write}')"),
	'VALID', 'migrated keys keep full access (scopes {})');

is($node->safe_psql('legacy', qq{
		SELECT string_agg(key_id || ':' || org_id || ':' || created_by || ':' || scopes::text, ',' ORDER BY key_id)
		  FROM apikey_keys}),
	join(',', map { "$key{$_}:" . { a => 10, b => 10, c => 20, d => 30, g => 10, h => 20 }->{$_}
		  . ":$spec{$_}[0]:{}" } sort { $key{$a} cmp $key{$b} } qw(a b c d g h)),
	'every mapped key got org_id, created_by = its user and scopes {}');
is($node->safe_psql('legacy',
		"SELECT $cols FROM apikey_keys WHERE key_id IN ($mapped) ORDER BY key_id"),
	$keys_before,
	'token hash, name, environment, limits, expiry, activity and usage are unchanged');
is($node->safe_psql('legacy',
		"SELECT key_id, bucket, requests, denied FROM apikey_usage WHERE key_id IN ($mapped) ORDER BY 1, 2"),
	$usage_before, 'the usage history of the migrated keys is kept');
is($node->safe_psql('legacy',
		"SELECT count(*) FROM apikey_usage WHERE key_id IN ('$key{e}', '$key{f}')"),
	'0', 'the usage of deleted orphans is gone with them');

# The audit trail of the migration.
is($node->safe_psql('legacy', qq{
		SELECT string_agg(key_id || ':' || (details->>'user_id') || ':' || (details->>'name'), ','
		                  ORDER BY details->>'user_id')
		  FROM apikey_events WHERE event = 'orphan_deleted'}),
	"$key{e}:5:no org,$key{f}:99:gone user",
	'one orphan_deleted event per orphan, with key_id, user_id and name');
is($node->safe_psql('legacy', qq{
		SELECT count(*) FILTER (WHERE event = 'migrated') || '/' || count(*) FROM apikey_events}),
	'6/8', 'one migrated event per migrated key, nothing else');

# Pending counts cross the update and land in the 2.0 tables.
$node->safe_psql('legacy', 'SELECT apikey_flush()');
is($node->safe_psql('legacy',
		"SELECT usage_count FROM apikey_keys WHERE key_id = '$key{a}'"),
	$usage_count_before{ $key{a} } + 2 + 2,
	'counts pending during the update are flushed into 2.0 (2 before + 2 after)');

# ---- rollback round trip: 2.0 -> 1.0 -> 2.0 ---------------------------------------

my ($ks, $ts) = split /\|/, $node->safe_psql('legacy',
	"SELECT key_id, token FROM apikey_create('10', 'scoped', '{documents:read}', created_by => '2')");
my ($ku, $tu) = split /\|/, $node->safe_psql('legacy',
	"SELECT key_id, token FROM apikey_create('10', 'unowned')");
$tok{s} = $ts;
$tok{u} = $tu;
my $events_before = $node->safe_psql('legacy', 'SELECT count(*) FROM apikey_events');

($ret, $out, $err) = try_sql('legacy', "ALTER EXTENSION apikey UPDATE TO '1.0'");
isnt($ret, 0, 'downgrade with a key that has no created_by fails');
like($err, qr/ERROR:  cannot downgrade apikey to 1\.0: 1 key\(s\) have no created_by \(for example $ku\)/,
	'... naming the count and an example key');
like($err, qr/HINT:  /, '... with a hint');
is($node->safe_psql('legacy', "SELECT extversion FROM pg_extension WHERE extname = 'apikey'"),
	'2.0', '... and the extension is still 2.0');
is($node->safe_psql('legacy', qq{
		SELECT is_active, scopes FROM apikey_keys WHERE key_id = '$ks'}),
	't|{documents:read}', '... the scoped key is untouched');
is(verify20('legacy', 's', ", '{documents:read}'"), 'VALID|10', '... and verifies');
is($node->safe_psql('legacy', 'SELECT count(*) FROM apikey_events'),
	$events_before, '... and no event was written');

$node->safe_psql('legacy', "UPDATE apikey_keys SET created_by = '2' WHERE key_id = '$ku'");
($ret, $out, $err) = try_sql('legacy', "ALTER EXTENSION apikey UPDATE TO '1.0'");
is($ret, 0, 'downgrade to 1.0 succeeds once every key has created_by') or diag($err);
like($err, qr/WARNING:  apikey downgrade deactivated 1 key\(s\) with limited scopes/,
	'... warning that 1 scoped key was deactivated');
is($node->safe_psql('legacy', "SELECT extversion FROM pg_extension WHERE extname = 'apikey'"),
	'1.0', 'the extension is 1.0');
is(verify10('legacy', 'a'), 't|VALID|1', '1.0 again: the key of user 1 verifies, user_id from created_by');
is(verify10('legacy', 'c'), 't|VALID|3', '1.0 again: the key of user 3 verifies');
is(verify10('legacy', 'u'), 't|VALID|2', '1.0 again: the key created in 2.0 verifies for its created_by');
is(verify10('legacy', 's'), 'f|REVOKED|', 'the scoped key was deactivated, not widened');
is(verify10('legacy', 'g'), 'f|EXPIRED|', 'the expired key is EXPIRED');
is(verify10('legacy', 'h'), 'f|REVOKED|', 'the inactive key is REVOKED');
is(verify10('legacy', 'e'), 'f|NOT_FOUND|', 'deleted orphans do not come back');
is($node->safe_psql('legacy', 'SELECT count(*) FROM apikey_keys'),
	'8', '8 keys in 1.0');

($ret, $out, $err) = try_sql('legacy', $mapping_sql . "ALTER EXTENSION apikey UPDATE TO '2.0'");
is($ret, 0, 'and up to 2.0 again') or diag($err);
like($err, qr/Migrated 8 API key\(s\).*Deleted 0 orphaned key\(s\)/s,
	'... migrating 8 keys, deleting none');
is(verify20('legacy', 'a'), 'VALID|10', '2.0 again: VALID in org 10');
is(verify20('legacy', 'u'), 'VALID|10', '2.0 again: the unowned-then-owned key, VALID in org 10');
is(verify20('legacy', 'd'), 'VALID|30', '2.0 again: VALID in org 30');
is(verify20('legacy', 's'), 'REVOKED|', 'the deactivated scoped key stays inactive');
$node->safe_psql('legacy', 'SELECT apikey_flush()');
is($node->safe_psql('legacy',
		"SELECT usage_count >= $usage_count_before{ $key{a} } + 3 FROM apikey_keys WHERE key_id = '$key{a}'"),
	't', 'usage history survives the round trip');
cmp_ok($node->safe_psql('legacy', 'SELECT count(*) FROM apikey_events'),
	'>', $events_before, 'the audit trail survives the round trip');

# ---- the security release: 2.0 -> 2.1 -> 1.1 -> 2.1 ----------------------------

($ret, $out, $err) = try_sql('legacy', "ALTER EXTENSION apikey UPDATE TO '2.1'");
is($ret, 0, '2.0 -> 2.1 succeeds') or diag($err);
is(verify20('legacy', 'a'), 'VALID|10', '2.1: VALID in org 10');
is(verify20('legacy', 'd'), 'VALID|30', '2.1: VALID in org 30');
is(verify20('legacy', 's'), 'REVOKED|', '2.1: the deactivated key stays inactive');
($ret, $out, $err) = try_sql('legacy', "ALTER EXTENSION apikey UPDATE TO '1.1'");
is($ret, 0, '2.1 -> 1.1 succeeds') or diag($err);
is($node->safe_psql('legacy', "SELECT extversion FROM pg_extension WHERE extname = 'apikey'"),
	'1.1', 'the extension is 1.1');
is(verify10('legacy', 'a'), 't|VALID|1', '1.1: the key of user 1 verifies, user_id from created_by');
is(verify10('legacy', 'u'), 't|VALID|2', '1.1: the key created in 2.0 verifies for its created_by');
is(verify10('legacy', 'e'), 'f|NOT_FOUND|', '1.1: deleted orphans do not come back');
($ret, $out, $err) = try_sql('legacy', $mapping_sql . "ALTER EXTENSION apikey UPDATE TO '2.1'");
is($ret, 0, '1.1 -> 2.1 (the org migration from the security release) succeeds') or diag($err);
like($err, qr/WARNING:  API KEY MIGRATION WARNING.*Migrated 8 API key\(s\).*Deleted 0 orphaned key\(s\).*ACTION REQUIRED: review your API keys/s,
	'... with the migration warning: 8 migrated, none deleted');
is(verify20('legacy', 'a'), 'VALID|10', '2.1 again: VALID in org 10');
is(verify20('legacy', 'c'), 'VALID|20', '2.1 again: VALID in org 20');
is($node->safe_psql('legacy', qq{
		SELECT count(*) FROM apikey_events WHERE event = 'migrated'
		   AND details->>'from_version' = '1.1' AND details->>'to_version' = '2.1'}),
	'8', 'one migrated event per key, naming 1.1 -> 2.1');
$node->safe_psql('legacy', 'SELECT apikey_flush()');
is($node->safe_psql('legacy',
		"SELECT usage_count >= $usage_count_before{ $key{a} } + 3 FROM apikey_keys WHERE key_id = '$key{a}'"),
	't', 'usage history survives the security release round trip');

# ---- update paths -------------------------------------------------------------

# Direct steps, and that nothing leads back to 2.0 (it would reinstall the
# holes 2.1 closes).  Multi-step paths (1.0 -> 2.1 goes through 1.1 or 2.0,
# which end in the same catalog: see below) are not spelled out.
is($node->safe_psql('legacy', qq{
		SELECT string_agg(source || '>' || target, ',' ORDER BY source, target)
		  FROM pg_extension_update_paths('apikey')
		 WHERE path = source || '--' || target}),
	'1.0>1.1,1.0>2.0,1.1>2.1,2.0>1.0,2.0>2.1,2.1>1.1,2.1>2.2,2.2>2.1',
	'pg_extension_update_paths: the direct steps');
is($node->safe_psql('legacy', qq{
		SELECT count(*) FROM pg_extension_update_paths('apikey')
		 WHERE target = '2.0' AND source NOT IN ('1.0') AND path IS NOT NULL}),
	'0', 'no path leads from 1.1 or 2.1 back to 2.0');

# ============================================================================
# Schema equality: a fresh install vs 1.0 -> 2.0 -> 2.1 (the released path,
# then the security release) vs 1.0 -> 1.1 -> 2.1 (the legacy security
# release, then the org migration).
# ============================================================================
my $default_version = $node->safe_psql('postgres',
	"SELECT default_version FROM pg_available_extensions WHERE name = 'apikey'");
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION apikey');
my $org_mapping = q{SET apikey.org_mapping = 'SELECT * FROM (VALUES (''u1'', ''o1''), (''u2'', ''o2'')) AS m(user_id, org_id)'};
$node->safe_psql('postgres', 'CREATE DATABASE upgraded');
$node->safe_psql('upgraded', qq{
	CREATE EXTENSION apikey VERSION '1.0';
	SELECT apikey_generate('u1', 'one');
	SELECT apikey_generate('u2', 'two');
	$org_mapping;
	ALTER EXTENSION apikey UPDATE TO '2.0';
	ALTER EXTENSION apikey UPDATE TO '2.1';
	ALTER EXTENSION apikey UPDATE TO '$default_version';
});
$node->safe_psql('postgres', 'CREATE DATABASE legacy_release');
$node->safe_psql('legacy_release', qq{
	CREATE EXTENSION apikey VERSION '1.0';
	SELECT apikey_generate('u1', 'one');
	SELECT apikey_generate('u2', 'two');
	ALTER EXTENSION apikey UPDATE TO '1.1';
	$org_mapping;
	ALTER EXTENSION apikey UPDATE TO '2.1';
	ALTER EXTENSION apikey UPDATE TO '$default_version';
});

# One line per member object of the extension, with everything that defines it.
my $fingerprint_sql = q{
WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'apikey'),
m AS (SELECT d.classid, d.objid, d.objsubid
        FROM pg_depend d, ext
       WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid
         AND d.deptype = 'e')
SELECT pg_describe_object(m.classid, m.objid, m.objsubid) || ' => ' ||
  CASE m.classid
  WHEN 'pg_proc'::regclass THEN (
    SELECT pg_get_functiondef(p.oid)
           || ' acl=' || coalesce(p.proacl::text, '-')
           || ' config=' || coalesce(p.proconfig::text, '-')
           || ' secdef=' || p.prosecdef || ' volatile=' || p.provolatile::text
           || ' parallel=' || p.proparallel::text || ' strict=' || p.proisstrict
           || ' leakproof=' || p.proleakproof || ' cost=' || p.procost || ' rows=' || p.prorows
           || ' comment=' || coalesce(obj_description(p.oid, 'pg_proc'), '-')
      FROM pg_proc p WHERE p.oid = m.objid)
  WHEN 'pg_class'::regclass THEN (
    SELECT 'kind=' || c.relkind::text || ' persistence=' || c.relpersistence::text
           || ' acl=' || coalesce(c.relacl::text, '-')
           || ' options=' || coalesce(c.reloptions::text, '-')
           || ' rls=' || c.relrowsecurity || '/' || c.relforcerowsecurity
           || ' comment=' || coalesce(obj_description(c.oid, 'pg_class'), '-')
           || ' columns=' || coalesce((
                SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                                  || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                                  || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '')
                                  || coalesce(' identity ' || nullif(a.attidentity::text, ''), '')
                                  || coalesce(' generated ' || nullif(a.attgenerated::text, ''), '')
                                  || coalesce(' acl ' || a.attacl::text, '')
                                  || coalesce(' comment ' || col_description(c.oid, a.attnum), ''),
                                  ', ' ORDER BY a.attnum)
                  FROM pg_attribute a
                  LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '-')
           || ' constraints=' || coalesce((
                SELECT string_agg(co.conname || ' ' || pg_get_constraintdef(co.oid), '; '
                                  ORDER BY co.conname)
                  FROM pg_constraint co WHERE co.conrelid = c.oid), '-')
           || ' indexes=' || coalesce((
                SELECT string_agg(pg_get_indexdef(i.indexrelid), '; '
                                  ORDER BY pg_get_indexdef(i.indexrelid))
                  FROM pg_index i WHERE i.indrelid = c.oid), '-')
           || ' triggers=' || coalesce((
                SELECT string_agg(pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text, '; '
                                  ORDER BY t.tgname)
                  FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal), '-')
           || ' policies=' || coalesce((
                SELECT string_agg(po.polname || ' ' || po.polcmd::text || ' ' || coalesce(pg_get_expr(po.polqual, po.polrelid), ''), '; '
                                  ORDER BY po.polname)
                  FROM pg_policy po WHERE po.polrelid = c.oid), '-')
           || CASE WHEN c.relkind = 'v' THEN ' view=' || pg_get_viewdef(c.oid) ELSE '' END
           || CASE WHEN c.relkind = 'S' THEN
                ' sequence=' || (SELECT s.seqtypid::regtype || ' start ' || s.seqstart || ' inc ' || s.seqincrement
                                        || ' min ' || s.seqmin || ' max ' || s.seqmax
                                        || ' cache ' || s.seqcache || ' cycle ' || s.seqcycle
                                   FROM pg_sequence s WHERE s.seqrelid = c.oid)
                || ' owned by ' || coalesce((
                     SELECT pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid)
                       FROM pg_depend d
                      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                        AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'a'), '-')
              ELSE '' END
      FROM pg_class c WHERE c.oid = m.objid)
  WHEN 'pg_type'::regclass THEN (
    SELECT 'typtype=' || t.typtype::text || ' acl=' || coalesce(t.typacl::text, '-')
           || ' attributes=' || coalesce((
                SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', '
                                  ORDER BY a.attnum)
                  FROM pg_attribute a
                 WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped), '-')
      FROM pg_type t WHERE t.oid = m.objid)
  ELSE '(other)'
  END
  || ' initprivs=' || coalesce((
       SELECT ip.initprivs::text FROM pg_init_privs ip
        WHERE ip.classoid = m.classid AND ip.objoid = m.objid AND ip.objsubid = m.objsubid), '-')
  FROM m
UNION ALL
SELECT 'extension ' || e.extname || ' version=' || e.extversion
       || ' relocatable=' || e.extrelocatable
       || ' schema=' || e.extnamespace::regnamespace
       || ' config=' || coalesce((
            SELECT string_agg(cfg.rel::regclass::text || ':' || coalesce(cfg.cond, ''), ', '
                              ORDER BY cfg.rel::regclass::text)
              FROM unnest(e.extconfig, e.extcondition) AS cfg(rel, cond)), '-')
  FROM pg_extension e WHERE e.extname = 'apikey'
ORDER BY 1
};

my $fp_fresh = $node->safe_psql('fresh', $fingerprint_sql);
my $fp_upgraded = $node->safe_psql('upgraded', $fingerprint_sql);
my $fp_legacy = $node->safe_psql('legacy_release', $fingerprint_sql);

# Report differences line by line rather than two walls of text.
sub compare_lines
{
	my ($a, $b, $name) = @_;
	my %in_a = map { $_ => 1 } split /\n/, $a;
	my %in_b = map { $_ => 1 } split /\n/, $b;
	my @only_a = grep { !$in_b{$_} } split /\n/, $a;
	my @only_b = grep { !$in_a{$_} } split /\n/, $b;
	ok($a eq $b, $name)
	  or diag("only in the fresh install:\n  " . join("\n  ", @only_a)
		  . "\nonly in the updated one:\n  " . join("\n  ", @only_b));
}

my $n_members = () = $fp_fresh =~ /\n/g;
cmp_ok($n_members, '>', 30, "the fingerprint covers the extension's member objects ($n_members)");
like($fp_fresh, qr/^table apikey_keys => .*columns=key_id text not null/m,
	'... tables with their columns');
like($fp_fresh, qr/^function apikey_verify\(text,text\[\],inet\) => /m, '... functions');
like($fp_fresh, qr/^view apikey_stats => /m, '... views');
like($fp_fresh, qr/^type apikey_verification => /m, '... types');
like($fp_fresh, qr/^sequence apikey_events_event_id_seq => /m, '... sequences');
compare_lines($fp_fresh, $fp_upgraded,
	"fresh $default_version and 1.0 -> 2.0 -> 2.1 have identical extension member objects");
compare_lines($fp_fresh, $fp_legacy,
	"fresh $default_version and 1.0 -> 1.1 -> 2.1 have identical extension member objects");

# pg_dump --schema-only, plain and in binary-upgrade mode (which, unlike the
# plain mode, lists every member object of the extension).
sub dump_schema
{
	my ($db, @opts) = @_;
	my ($stdout, $stderr);
	my $ok = IPC::Run::run([ 'pg_dump', '--schema-only', @opts, '-d', $node->connstr($db) ],
		'>', \$stdout, '2>', \$stderr);
	die "pg_dump $db failed: $stderr" unless $ok;
	my @lines;
	for my $l (split /\n/, $stdout)
	{
		next if $l =~ /^--/ || $l =~ /^\s*$/;
		# pg_dump >= 15.14 brackets its output with a random key
		next if $l =~ /^\\(un)?restrict /;
		# OIDs, transaction ids and the sequence's position (data, not
		# schema) are allowed to differ
		next if $l =~ /binary_upgrade_set_next_/;
		next if $l =~ /pg_catalog\.setval\(/;
		$l =~ s/'\{[0-9,]*\}'/'{OIDS}'/g;
		$l =~ s/(relfrozenxid|relminmxid|oid) = '\d+'/$1 = 'N'/g;
		push @lines, $l;
	}
	return join("\n", @lines);
}

my $dump_fresh = dump_schema('fresh');
like($dump_fresh, qr/CREATE EXTENSION IF NOT EXISTS apikey/, 'pg_dump --schema-only names the extension');
my $bdump_fresh = dump_schema('fresh', '--binary-upgrade');
like($bdump_fresh, qr/CREATE TABLE public\.apikey_keys/,
	'pg_dump --schema-only --binary-upgrade lists the member objects');
for my $db ('upgraded', 'legacy_release')
{
	compare_lines($dump_fresh, dump_schema($db),
		"pg_dump --schema-only: the fresh install and $db are identical");
	compare_lines($bdump_fresh, dump_schema($db, '--binary-upgrade'),
		"pg_dump --schema-only --binary-upgrade: the fresh install and $db are identical");
}

# ============================================================================
# Scale: 100,000 keys of 1,000 users in 100 organizations.
# ============================================================================
$node->safe_psql('postgres', 'CREATE DATABASE scale');
$node->safe_psql('scale', q{
	CREATE TABLE users AS
	  SELECT u AS id, CASE WHEN u < 990 THEN u % 100 END AS organization_id
	    FROM generate_series(0, 999) u;
	CREATE EXTENSION apikey VERSION '1.0';
	-- key g belongs to user g % 1000; its token is 'tok' || g (a foreign
	-- token: looked up by its hash)
	INSERT INTO apikey_keys (key_id, user_id, name, hint, hash, environment,
	                         rate_limit, rate_window, usage_count)
	SELECT 'key_' || lpad(g::text, 16, '0'), (g % 1000)::text, 'bulk key ' || g,
	       'ak_live_bulk', sha256(convert_to('tok' || g, 'UTF8')), 'live',
	       1000, interval '1 hour', g % 7
	  FROM generate_series(1, 100000) g;
	-- usage history of every tenth key
	INSERT INTO apikey_usage (key_id, bucket, requests, denied)
	SELECT 'key_' || lpad(g::text, 16, '0'), date_trunc('hour', now()), g % 7, 0
	  FROM generate_series(10, 100000, 10) g;
	ANALYZE;
});
is($node->safe_psql('scale', q{SELECT code, user_id FROM apikey_verify('tok42')}),
	'VALID|42', 'scale: 1.0 verifies a bulk-loaded key');

my $t0 = time;
($ret, $out, $err) = try_sql('scale', $mapping_sql . "ALTER EXTENSION apikey UPDATE");
my $elapsed = time - $t0;
is($ret, 0, 'scale: the update of 100,000 keys to the default version completes') or diag($err);
diag(sprintf('ALTER EXTENSION apikey UPDATE (1.0 -> %s) of 100,000 keys took %.2f s',
		$default_version, $elapsed));
like($err, qr/Migrated 99000 API key\(s\)/, 'scale: 99,000 keys migrated');
like($err, qr/Deleted 1000 orphaned key\(s\)/, 'scale: 1,000 orphans (10 users without organization) deleted');
is($node->safe_psql('scale', q{
		SELECT count(*) || '/' || count(DISTINCT org_id) || '/' || sum(usage_count)
		  FROM apikey_keys}),
	'99000/100/' . $node->safe_psql('postgres', q{
		SELECT sum(g % 7) FROM generate_series(1, 100000) g WHERE g % 1000 < 990}),
	'scale: 99,000 keys in 100 organizations, usage counts kept');
is($node->safe_psql('scale', 'SELECT count(*) FROM apikey_usage'),
	'9900', 'scale: usage history of the migrated keys kept, of the orphans deleted');
is($node->safe_psql('scale', q{
		SELECT count(*) FILTER (WHERE event = 'migrated') || '/'
		       || count(*) FILTER (WHERE event = 'orphan_deleted') FROM apikey_events}),
	'99000/1000', 'scale: one event per migrated and per deleted key');
is($node->safe_psql('scale', q{SELECT code, org_id FROM apikey_verify('tok42')}),
	'VALID|42', 'scale: a migrated key verifies in its organization');
is($node->safe_psql('scale', q{SELECT code FROM apikey_verify('tok1990')}),
	'NOT_FOUND', 'scale: an orphan is gone');

$node->stop('fast');
done_testing();
