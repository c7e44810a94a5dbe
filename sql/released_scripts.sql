--
-- released_scripts: released install and update scripts are frozen.
--
-- Every apikey--*.sql installed in the extension directory, with its
-- SHA-256.  A released version's scripts never change: a database that
-- installed 2.0 runs whatever "2.0" meant when it did, and only a new
-- version with its own update script reaches it (ALTER EXTENSION UPDATE
-- does nothing for a version already installed).  A version is released
-- once it is on main.
--
-- IF THIS TEST FAILS:
--   * a script listed here CHANGED (its checksum differs): undo the change
--     to the released script, and put it in a new version instead -- a
--     new apikey--X.Y--X.Z.sql update script (and, if need be, a new
--     apikey--X.Z.sql install script), with default_version in
--     apikey.control and the DATA list in the Makefile;
--   * a NEW script appears: that is a new version.  Add its line to
--     expected/released_scripts.out deliberately, in the change that
--     releases it (merges it to main); from then on it is frozen too;
--   * a script DISAPPEARED: released scripts are never removed (databases
--     may still be at that version, or need its update path).
-- (The test reads the installed files, so it runs as a superuser.)
--
SELECT f AS script,
       encode(sha256(pg_read_binary_file(d || f)), 'hex') AS sha256
  FROM (SELECT setting || '/extension/' AS d FROM pg_config WHERE name = 'SHAREDIR') s,
       LATERAL pg_ls_dir(s.d) AS f
 WHERE f LIKE 'apikey--%.sql'
 ORDER BY f COLLATE "C";
