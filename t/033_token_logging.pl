# t/033_token_logging.pl -- tokens never reach the server log by default
# (issue 15, item 6), and the leak scanner test/check-token-leaks.pl.
#
# The scanner finds full tokens of this extension in log files: anything
# shaped {prefix}_{environment}_{32+ base62}{6 base62} whose checksum is the
# CRC-32 of the rest, which key_ids, hints and tokens cut short are not.  It
# prints each as LEAK file:line: <first 12 characters>... and exits 1.
#
# What PostgreSQL itself logs, for an application's call that fails (an
# invalid scope) with the token as a bind parameter (pgbench -M extended;
# the token is fetched with \gset, so it is never on a command line):
#
#   * with the server's default logging (log_statement = none,
#     log_min_error_statement = error, log_parameter_max_length_on_error = 0)
#     the ERROR and the statement are logged, with $1 where the token was:
#     no token;
#   * with log_statement = 'all' every statement is logged with its
#     parameters ("DETAIL: parameters: $1 = 'ak_live_...'"): the token IS in
#     the log.  So is it when the application sets
#     log_parameter_max_length_on_error itself (it is a user setting);
#   * ALTER ROLE app SET log_parameter_max_length = 0 keeps the parameters of
#     the application's statements out of the log even with log_statement =
#     'all'.
#
# A token written into the SQL text itself (not a bind parameter) is part of
# the statement, and any logged statement carries it: applications must pass
# tokens as parameters.
#
# This test never has a token in its own hands except to check the scanner's
# masking, and never prints one: its own log is scanned at the end.
use strict;
use warnings;
use File::Spec;
use FindBin;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $scanner = "$FindBin::Bin/../test/check-token-leaks.pl";
# absolute: the server writes files there (COPY ... TO), and PostgreSQL 18's
# tempdir is relative to the test's directory
my $tmp = File::Spec->rel2abs(PostgreSQL::Test::Utils::tempdir);

# Run the scanner; returns (exit code, output).
sub scan
{
	my @files = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ $^X, $scanner, @files ], '>', \$out, '2>', \$err);
	return ($? >> 8, $out . $err);
}

my $node = PostgreSQL::Test::Cluster->new('tokens');
$node->init;
# PostgreSQL::Test::Cluster sets log_statement = all; put back the server's
# defaults.
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'apikey'
apikey.workers = off
log_statement = none
log_min_error_statement = error
log_parameter_max_length = -1
log_parameter_max_length_on_error = 0
log_line_prefix = '%m [%p] %b %q%a '
});
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION apikey;
	CREATE ROLE app LOGIN;
	CREATE TABLE app_secret (token text NOT NULL);
	GRANT SELECT ON app_secret TO app;
	INSERT INTO app_secret SELECT k.token FROM apikey_create('org_t', 'logged?', rate_limit => 0) k;
});

# ---- the scanner ---------------------------------------------------------------

# A file with the token, cut-short copies, its key_id and hint, written by
# the server so that the token never passes through this script's output.
my $sample = "$tmp/sample.log";
$node->safe_psql('postgres', qq{
	COPY (SELECT s.line FROM app_secret a, apikey_keys k,
	      LATERAL (VALUES ('whole: ' || a.token),
	                      ('quoted: ''' || a.token || ''', then more text'),
	                      ('cut short: ' || left(a.token, length(a.token) - 1)),
	                      ('key ' || k.key_id || ', hint ' || k.hint),
	                      ('Authorization: Bearer ' || a.token),
	                      ('nothing here')) AS s(line)
	      WHERE k.name = 'logged?')
	  TO '$sample'});
my ($rc, $out) = scan($sample);
is($rc, 1, 'the scanner exits 1 when it finds tokens');
my @leaks = split /\n/, $out;
is(scalar(@leaks), 3, '... it finds the three whole tokens, not the cut-short one, the key_id or the hint');
is(scalar(grep { m{^LEAK \Q$sample\E:[125]: [a-z][a-z0-9]*_[a-z][a-z0-9]*_\w+\.\.\.$} } @leaks), 3,
	'... and prints LEAK file:line: for each');
my $token = (split /\n/, slurp_file($sample))[0];
$token =~ s/^whole: //;
ok(index($out, $token) < 0, '... with the token masked');
is(length((split /: /, $leaks[0], 2)[1]), 12 + 3, '... down to its first 12 characters');

PostgreSQL::Test::Utils::append_to_file("$tmp/clean.log", "no tokens here: ak_live_short\n");
($rc, $out) = scan("$tmp/clean.log");
is($rc, 0, 'the scanner exits 0 on a clean file');
is($out, '', '... and prints nothing');
($rc, $out) = scan("$tmp/clean.log", "$tmp/missing.log");
is($rc, 2, 'it exits 2 when a file cannot be read');

# --skip-statement-echo (what scripts/test.sh uses on TAP server logs, where
# log_statement = all echoes the tests' literals): the echo of the client's
# statement, its continuation lines and its parameters are skipped; a token
# in anything else -- here a WARNING's DETAIL after the echo -- is found.
my $echo = "$tmp/echo.log";
PostgreSQL::Test::Utils::append_to_file($echo, join('', map { "$_\n" }
	"2026-11-30 [1] client backend LOG:  statement: SELECT apikey_verify('$token')",
	"\t  FROM t WHERE x = '$token'",
	"2026-11-30 [1] client backend DETAIL:  Parameters: \$1 = '$token'",
	"2026-11-30 [1] client backend ERROR:  bad scope",
	"2026-11-30 [1] client backend STATEMENT:  SELECT apikey_verify('$token')",
	"2026-11-30 [1] client backend WARNING:  something",
	"2026-11-30 [1] client backend DETAIL:  token $token"));
($rc, $out) = scan('--skip-statement-echo', $echo);
is($rc, 1, '--skip-statement-echo still finds a token outside the echo');
like($out, qr/^LEAK \Q$echo\E:7: \S+\.\.\.\n\z/, '... on that line alone');
($rc, $out) = scan($echo);
is(scalar(split /\n/, $out), 5, 'without it, every line with a token is reported');

# ---- the application's failing call --------------------------------------------

# pgbench, connected as app, extended protocol: the token is fetched with
# \gset and passed as $1 of a call that fails (invalid scope).
my $script = "$tmp/app.sql";
PostgreSQL::Test::Utils::append_to_file($script, <<'EOS');
SELECT token AS tok FROM app_secret \gset
SELECT apikey_verify(:tok, '{not a scope!}', :ip);
EOS

# Run the application once; returns the part of the server log it produced.
sub run_app
{
	my ($setup) = @_;
	my $file = "$tmp/app.sql";
	if ($setup)
	{
		$file = "$tmp/app_setup.sql";
		unlink $file;
		PostgreSQL::Test::Utils::append_to_file($file, "$setup\n" . slurp_file($script));
	}
	my $offset = -s $node->logfile;
	my ($stdout, $stderr) = ('', '');
	IPC::Run::run(
		[
			'pgbench', '-n', '-t', '1', '-M', 'extended', '-f', $file,
			'-D', 'ip=203.0.113.9', $node->connstr('postgres') . ' user=app'
		],
		'>', \$stdout, '2>', \$stderr);
	like($stderr, qr/invalid scope "not a scope!"/, 'the application\'s call failed: invalid scope');
	# the server writes its log asynchronously from the client's view
	{
		local $PostgreSQL::Test::Utils::timeout_default = 30;
		$node->wait_for_log(qr/ERROR:\s+invalid scope/, $offset);
	}
	my $part = "$tmp/server_part_" . $offset . '.log';
	PostgreSQL::Test::Utils::append_to_file($part, slurp_file($node->logfile, $offset));
	return $part;
}

my $part = run_app();
my $logged = slurp_file($part);
like($logged, qr/ERROR:\s+invalid scope "not a scope!"/, 'default logging: the ERROR is logged');
like($logged, qr/STATEMENT:\s+SELECT apikey_verify\(\$1, '\{not a scope!\}', \$2\)/,
	'... with the statement, $1 where the token was');
($rc, $out) = scan($part);
is($rc, 0, '... and no token in the server log') or diag($out);

# The application may ask for its parameters on error itself.
$part = run_app('SET log_parameter_max_length_on_error = -1;');
($rc, $out) = scan($part);
is($rc, 1, 'with log_parameter_max_length_on_error set by the application, the token is logged')
  or diag(slurp_file($part));
note "the scanner reports:\n$out";

# log_statement = 'all': every statement with its parameters.
$node->safe_psql('postgres', q{ALTER SYSTEM SET log_statement = 'all'; SELECT pg_reload_conf()});
$node->poll_query_until('postgres', 'SHOW log_statement', 'all') or die;
$part = run_app();
like(slurp_file($part), qr/DETAIL:\s+[Pp]arameters: \$1 = '/,
	'log_statement = all logs the parameters of the call');
($rc, $out) = scan($part);
is($rc, 1, '... and so the token: the scanner finds it');
note "the scanner reports:\n$out";

# ... unless the application's role does not log parameters.
$node->safe_psql('postgres', 'ALTER ROLE app SET log_parameter_max_length = 0');
$part = run_app();
like(slurp_file($part), qr/execute <unnamed>: SELECT apikey_verify\(\$1, '\{not a scope!\}', \$2\)/,
	'with ALTER ROLE app SET log_parameter_max_length = 0 the statement is still logged');
($rc, $out) = scan($part);
is($rc, 0, '... but without the token') or diag($out);

$node->stop('fast');

# The server log now holds the token where this test had it logged on
# purpose.  The test run scans every server log for leaks: mask it there,
# then check that nothing else is left, in the server log or in this test's
# own.
my $server_log = slurp_file($node->logfile);
my $masked = substr($token, 0, 12) . '...(masked by t/033: logged on purpose)';
my $times = ($server_log =~ s/\Q$token\E/$masked/g) || 0;
note "the token was in the server log $times time(s), as the cases above expect";
open(my $fh, '>', $node->logfile) or die "could not rewrite the server log: $!";
print $fh $server_log;
close($fh);
undef $token;
($rc, $out) = scan($node->logfile, $sample);
is($rc, 1, 'masked, the server log holds no other token (the sample file still does)');
is(scalar(() = $out =~ /^LEAK/mg), 3, '... only the three in the sample file') or diag($out);
unlink $sample;
($rc, $out) = scan($PostgreSQL::Test::Utils::test_logfile);
is($rc, 0, 'this test\'s own log holds no token') or diag($out);

done_testing();
