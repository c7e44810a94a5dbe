# t/020_security_alerts.pl -- alerts are rows only their readers can read.
#
# Failed verifications from one client address beyond apikey.alert_failures
# a minute raise an alert.  Any role may LISTEN on a channel and NOTIFY on
# it -- PostgreSQL has no privilege for either -- so since 2.1 (issue 14,
# attack 5):
#   * the alert is a row of apikey_alerts (kind, and details: the JSON that
#     2.0 sent as the payload, with the client address), readable only by
#     roles granted the table;
#   * NOTIFY apikey_alerts carries only {"alert_id": N, "kind": ...}: a
#     listener without the grant learns that an alert happened, nothing of
#     it, and cannot read the row;
#   * a forged NOTIFY names no row: listeners read the details from the
#     table, which only the extension writes;
#   * an alert raised while nobody listens is in the table, across a restart.
# The workers are off: apikey_flush() records the alerts, so that the test
# does not depend on timing.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('security_alerts');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'apikey'
apikey.workers = off
apikey.alert_failures = 3
});
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE app');
$node->safe_psql('app', q{
	CREATE EXTENSION apikey;
	-- a monitoring role, granted the alerts; a nosy one and a forger, not
	CREATE ROLE regress_sec_watcher LOGIN;
	GRANT SELECT ON apikey_alerts TO regress_sec_watcher;
	CREATE ROLE regress_sec_nosy LOGIN;
	CREATE ROLE regress_sec_forger LOGIN;
});

# Five failed verifications from ADDR, by an application role (PUBLIC may
# verify), then a flush by the DBA: one alert.
sub fail_from
{
	my ($addr) = @_;
	$node->safe_psql('app', qq{
		SELECT count(*) FROM (SELECT apikey_verify('ak_live_nosuchtoken', '{}', '$addr')
		                        FROM generate_series(1, 5)) s},
		extra_params => [ '-U', 'regress_sec_nosy' ]);
	$node->safe_psql('app', 'SELECT apikey_flush()');
}

# What a listening session has heard: the notifications psql prints after
# its next command.
sub heard
{
	my ($session) = @_;
	return $session->query('SELECT 1');
}

my $nosy = $node->background_psql('app', on_error_stop => 0,
	extra_params => [ '-U', 'regress_sec_nosy' ]);
my $watcher = $node->background_psql('app',
	extra_params => [ '-U', 'regress_sec_watcher' ]);
$nosy->query_safe('LISTEN apikey_alerts');
$watcher->query_safe('LISTEN apikey_alerts');

# ---- an alert -----------------------------------------------------------------
fail_from('203.0.113.9');

my $nosy_heard = heard($nosy);
my $watcher_heard = heard($watcher);
my $notification =
  qr/Asynchronous notification "apikey_alerts" with payload "(\{[^"]*(?:"[^"]*"[^"]*)*\})" received/;
my ($payload) = $nosy_heard =~ $notification;
ok(defined $payload, 'a LISTENer without privileges is notified of the alert')
  or diag($nosy_heard);
$payload //= '';
like($payload, qr/^\{"alert_id" ?: ?\d+, ?"kind" ?: ?"failed_verifications"\}$/,
	'... with only the alert_id and the kind');
unlike($nosy_heard, qr/203\.0\.113\.9|client_ip|failures|threshold|minute/,
	'... and nothing of the client address, the count or the threshold');
my ($alert_id) = $payload =~ /"alert_id" ?: ?(\d+)/;
$alert_id //= 0;
like($watcher_heard, qr/"alert_id" ?: ?$alert_id\b/,
	'the monitoring role hears the same notification');

# The nosy listener cannot read the row it was told about.
my ($out, $err) = $nosy->query("SELECT * FROM apikey_alerts WHERE alert_id = $alert_id");
ok($err, 'a LISTENer without the grant cannot read the alert');
like($nosy->{stderr}, qr/permission denied for table apikey_alerts/,
	'... permission denied for table apikey_alerts');
is($out, '', '... and gets no data');
$nosy->{stderr} = '';

# The monitoring role reads the details with its own privileges.
is( $watcher->query_safe(
		"SELECT kind, details->>'client_ip', (details->>'failures')::int >= 3, "
		  . "details->>'threshold' FROM apikey_alerts WHERE alert_id = $alert_id"),
	'failed_verifications|203.0.113.9|t|3',
	'the role granted apikey_alerts reads the client address, count and threshold');

# ---- forged alerts ------------------------------------------------------------
# Anyone can NOTIFY on the channel ...
$node->safe_psql('app',
	q{NOTIFY apikey_alerts, '{"alert_id": 999999, "kind": "failed_verifications"}'},
	extra_params => [ '-U', 'regress_sec_forger' ]);
like(heard($watcher), qr/"alert_id": 999999/,
	'a forged NOTIFY reaches listeners (PostgreSQL cannot prevent it) ...');
# ... but it names no alert, and no role but the extension writes them.
is($watcher->query_safe('SELECT count(*) FROM apikey_alerts WHERE alert_id = 999999'),
	'0', '... and names no row of apikey_alerts');
my ($ret, $stdout, $stderr) = $node->psql('app',
	q{INSERT INTO apikey_alerts (kind, details) VALUES ('failed_verifications', '{"client_ip": "192.0.2.66"}')},
	extra_params => [ '-U', 'regress_sec_forger' ]);
like($stderr, qr/permission denied for table apikey_alerts/,
	'a role without the grant cannot insert an alert');
($ret, $stdout, $stderr) = $node->psql('app',
	q{INSERT INTO apikey_alerts (kind, details) VALUES ('failed_verifications', '{"client_ip": "192.0.2.66"}')},
	extra_params => [ '-U', 'regress_sec_watcher' ]);
like($stderr, qr/permission denied for table apikey_alerts/,
	'nor can a role granted SELECT');
($ret, $stdout, $stderr) = $node->psql('app',
	"DELETE FROM apikey_alerts WHERE alert_id = $alert_id",
	extra_params => [ '-U', 'regress_sec_watcher' ]);
like($stderr, qr/permission denied for table apikey_alerts/,
	'nor delete one');

$nosy->quit;
$watcher->quit;

# ---- nobody listening ---------------------------------------------------------
fail_from('198.51.100.7');
$node->restart;
is( $node->safe_psql(
		'app',
		"SELECT count(*), min(details->>'client_ip') FROM apikey_alerts "
		  . "WHERE details->>'client_ip' = '198.51.100.7'",
		extra_params => [ '-U', 'regress_sec_watcher' ]),
	'1|198.51.100.7',
	'an alert raised while nobody listened is in the table, after a restart too');
is( $node->safe_psql('app', 'SELECT count(*) FROM apikey_alerts',
		extra_params => [ '-U', 'regress_sec_watcher' ]),
	'2', 'two alerts in all: the forged one is not among them');

# ---- many sessions failing from one address at once ---------------------------
# Failures from one address are counted with atomics under a shared lock
# (failures.c), so concurrent sessions do not wait for each other; they must
# still raise exactly one alert per address and minute, and count every
# failure towards it.  Four clients, 400 failures each, from 192.0.2.55.
my $minutes_before = $node->safe_psql('app',
	"SELECT pg_catalog.floor(extract(epoch FROM pg_catalog.clock_timestamp()) / 60)");
$node->pgbench(
	'--no-vacuum --client=4 --jobs=4 --transactions=400 app',
	0,
	[qr{processed: 1600/1600}],
	[qr{^$}],
	'four sessions fail verifications from one address at once',
	{
		'020_flood' => q{SELECT (apikey_verify('ak_live_nosuchtoken', '{}', '192.0.2.55')).code}
	});
my $minutes_after = $node->safe_psql('app',
	"SELECT pg_catalog.floor(extract(epoch FROM pg_catalog.clock_timestamp()) / 60)");
$node->safe_psql('app', 'SELECT apikey_flush()');
my $spanned = $minutes_after - $minutes_before + 1;
my ($alerts, $least) = split /\|/, $node->safe_psql('app',
	"SELECT count(*), coalesce(min((details->>'failures')::int), 0) FROM apikey_alerts "
	  . "WHERE details->>'client_ip' = '192.0.2.55'");
# The failures fall in one minute, or in two when the run crosses a minute
# boundary: then each minute that got enough failures has its alert (a run
# whose failures all land on one side of the boundary raises one).
if ($spanned == 1) {
	is($alerts, 1, 'one alert for the minute of the concurrent failures');
} else {
	ok($alerts >= 1 && $alerts <= $spanned,
		"one alert per minute the concurrent failures fell in ($alerts; they spanned at most $spanned)");
}
# The alert counts the failures of its minute up to the flush: all 1,600
# when the run stayed within one minute.
ok($spanned > 1 || $least == 1600,
	"the alert counted every concurrent failure (1600 in one minute; got $least)");

$node->stop;
done_testing();
