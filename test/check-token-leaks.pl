#!/usr/bin/perl
#
# check-token-leaks.pl -- find full apikey tokens in log files.
#
#   test/check-token-leaks.pl [--skip-statement-echo] FILE...
#
# --skip-statement-echo: in server logs, skip what PostgreSQL echoes of the
# client's own input -- "LOG:  statement: ...", "LOG:  execute ...: ...",
# "DETAIL:  parameters: ..." (Parameters: from PostgreSQL 18) (log_statement, log_parameter_max_length*) and
# "STATEMENT:  ..." after an error, with their continuation lines.  TAP
# clusters run with log_statement = 'all' (PostgreSQL::Test::Cluster), and
# tests pass tokens as literals; what is left is everything the server and
# apikey write themselves (messages, DETAIL, HINT, CONTEXT, workers' lines),
# where no token may ever appear.  t/033_token_logging.pl shows what the
# echo holds under which settings.
#
# Prints one line per token found,
#
#   LEAK file:line: ak_live_AbCd...
#
# showing only the token's first 12 characters (for a default token that is
# the display hint: prefix, environment and 4 body characters), and exits 1
# if it found any, 0 if none, 2 if a file could not be read.
#
# What counts as a token is what apikey_verify would accept as well-formed
# (src/token.c):
#
#   {prefix}_{environment}_{body}{checksum}
#
# prefix and environment [a-z][a-z0-9]{0,15} (any prefix, not only "ak": a
# test may set apikey.token_prefix), a body of at least 32 base62 characters,
# and a checksum of 6 base62 digits that is the standard CRC-32 of everything
# before it.  The checksum is computed for every candidate, so that key_ids,
# hints, hashes and other long identifiers are not reported: a random string
# passes with a probability of about 1 in 5.7 * 10^10 per candidate.  A token
# cut short (log_parameter_max_length, a hint) is not a leak either.
#
# Runs with a plain perl: no modules beyond those in every installation.
use strict;
use warnings;

my $MAX_NAME = 16;     # APIKEY_MAX_NAME_LEN
my $BODY_MIN = 32;     # APIKEY_BODY_LEN
my $CHECKSUM = 6;      # APIKEY_CHECKSUM_LEN
my $MAX_TOKEN = 255;   # APIKEY_MAX_TOKEN_LEN
my $SHOWN = 12;        # characters of a leaked token printed

my @BASE62 = ('0' .. '9', 'A' .. 'Z', 'a' .. 'z');

# The standard (zlib, Ethernet) CRC-32, reflected polynomial 0xEDB88320.
my @CRC_TABLE = map {
	my $c = $_;
	$c = ($c & 1) ? (0xEDB88320 ^ ($c >> 1)) : ($c >> 1) for 1 .. 8;
	$c;
} 0 .. 255;

sub crc32
{
	my ($s) = @_;
	my $crc = 0xFFFFFFFF;
	$crc = $CRC_TABLE[($crc ^ $_) & 0xFF] ^ ($crc >> 8) for unpack('C*', $s);
	return $crc ^ 0xFFFFFFFF;
}

# value as exactly $CHECKSUM base62 digits, most significant first
sub base62_fixed
{
	my ($value) = @_;
	my $out = '';
	for (1 .. $CHECKSUM)
	{
		$out = $BASE62[ $value % 62 ] . $out;
		$value = int($value / 62);
	}
	return $out;
}

sub well_formed
{
	my ($token) = @_;
	return 0 if length($token) > $MAX_TOKEN;
	my $head = substr($token, 0, length($token) - $CHECKSUM);
	return base62_fixed(crc32($head)) eq substr($token, -$CHECKSUM);
}

# Every well-formed token in one line of text.
sub tokens_in
{
	my ($line) = @_;
	my @found;

	# run: the [a-z0-9] characters before the first '_' (the prefix is a
	# suffix of it); env; then the base62 run holding body and checksum.
	while ($line =~ /([a-z0-9]+)_([a-z][a-z0-9]{0,15})_([0-9A-Za-z]{38,})/g)
	{
		my ($run, $env, $tail) = ($1, $2, $3);
		my $hit;

	  PREFIX:
		for my $plen (1 .. (length($run) < $MAX_NAME ? length($run) : $MAX_NAME))
		{
			my $prefix = substr($run, -$plen);
			next unless $prefix =~ /^[a-z]/;
			# the token may be followed by more base62 text: try every end
			for my $len (reverse($BODY_MIN + $CHECKSUM .. length($tail)))
			{
				my $token = "${prefix}_${env}_" . substr($tail, 0, $len);
				next if length($token) > $MAX_TOKEN;
				if (well_formed($token))
				{
					$hit = $token;
					last PREFIX;
				}
			}
		}
		push @found, $hit if defined $hit;
	}
	return @found;
}

if (!@ARGV || $ARGV[0] =~ /^-(h|-help)$/)
{
	print STDERR "usage: $0 [--skip-statement-echo] FILE...\n",
	  "Prints LEAK file:line: <first $SHOWN characters>... for every apikey token found;\n",
	  "exits 1 if any was found, 2 if a file could not be read.\n";
	exit 2;
}

my $skip_echo = 0;
if (@ARGV && $ARGV[0] eq '--skip-statement-echo')
{
	$skip_echo = 1;
	shift @ARGV;
}

# Is this line the start of an echo of the client's input?
sub echo_start
{
	my ($line) = @_;
	return $line =~ /\b(?:LOG|DETAIL|STATEMENT):\s+(?:statement:\s|execute\s[^:]*:\s|[Pp]arameters:\s)/
	  || $line =~ /\bSTATEMENT:\s/;
}

my $leaks = 0;
my $unreadable = 0;
for my $file (@ARGV)
{
	my $fh;
	unless (open($fh, '<', $file))
	{
		print STDERR "$0: cannot read $file: $!\n";
		$unreadable++;
		next;
	}
	binmode($fh);
	my $in_echo = 0;
	while (my $line = <$fh>)
	{
		if ($skip_echo)
		{
			# a continuation line (a tab) belongs to the entry above it
			$in_echo = echo_start($line) ? 1 : ($line =~ /^\t/ ? $in_echo : 0);
			next if $in_echo;
		}
		for my $token (tokens_in($line))
		{
			printf "LEAK %s:%d: %s...\n", $file, $., substr($token, 0, $SHOWN);
			$leaks++;
		}
	}
	close($fh);
}
exit($unreadable ? 2 : $leaks ? 1 : 0);
