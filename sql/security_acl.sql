--
-- security_acl: every object of the extension, who owns it, who may use
-- it, and how its functions run.
--
-- The listings below are the extension's privilege surface, pinned by the
-- expected file: a function added later with PUBLIC's EXECUTE, a SECURITY
-- DEFINER function, a search_path left unpinned or a table readable by
-- PUBLIC shows up as a diff to review.  Members are found through
-- pg_depend (deptype 'e'); default privileges (a NULL ACL) are spelled out
-- with acldefault(), so "PUBLIC may execute" is visible; the installing
-- superuser is shown as "superuser" and, in ACLs, as "owner".
--
-- Then the rules every version must keep, as counts that must be 0:
--   * no SECURITY DEFINER function without a search_path that ends in
--     pg_temp (PostgreSQL searches pg_temp first when it is not named);
--   * no SECURITY DEFINER function that PUBLIC may execute;
--   * no table, view or sequence, and no column, with any privilege for
--     PUBLIC.
--
\set SHOW_CONTEXT never

-- The role that owns an object, as printed.
CREATE FUNCTION regress_sec_owner(r oid) RETURNS text
    LANGUAGE sql STABLE
AS $$ SELECT CASE WHEN r = 10 THEN 'superuser' ELSE r::regrole::text END $$;

-- An ACL, default privileges expanded, in PostgreSQL's own notation
-- (grantee=privileges, a=INSERT r=SELECT w=UPDATE d=DELETE D=TRUNCATE
-- x=REFERENCES t=TRIGGER X=EXECUTE U=USAGE, * after one grantable) with
-- PUBLIC for everyone and "owner" for the object's owner.  MAINTAIN (m,
-- PostgreSQL 17 on) is shown for anyone but the owner, who has it by default
-- there and cannot lack it on 15.
CREATE FUNCTION regress_sec_acl(acl aclitem[], kind "char", owner oid) RETURNS text
    LANGUAGE sql STABLE
AS $$
SELECT string_agg(g.grantee || '=' || g.privileges, ' ' ORDER BY g.rank, g.grantee)
  FROM (SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                    WHEN a.grantee = owner THEN 'owner'
                    ELSE a.grantee::regrole::text END AS grantee,
               CASE WHEN a.grantee = owner THEN 0 WHEN a.grantee = 0 THEN 1 ELSE 2 END AS rank,
               string_agg(l.letter || CASE WHEN a.is_grantable THEN '*' ELSE '' END, ''
                          ORDER BY strpos('arwdDxtmXUCTc', l.letter)) AS privileges
          FROM aclexplode(coalesce(acl, acldefault(kind, owner))) a,
               LATERAL (SELECT CASE a.privilege_type
                                   WHEN 'INSERT' THEN 'a' WHEN 'SELECT' THEN 'r'
                                   WHEN 'UPDATE' THEN 'w' WHEN 'DELETE' THEN 'd'
                                   WHEN 'TRUNCATE' THEN 'D' WHEN 'REFERENCES' THEN 'x'
                                   WHEN 'TRIGGER' THEN 't' WHEN 'EXECUTE' THEN 'X'
                                   WHEN 'USAGE' THEN 'U' WHEN 'CREATE' THEN 'C'
                                   WHEN 'TEMPORARY' THEN 'T' WHEN 'CONNECT' THEN 'c'
                                   WHEN 'MAINTAIN' THEN 'm'
                                   ELSE a.privilege_type END AS letter) l
         WHERE NOT (a.privilege_type = 'MAINTAIN' AND a.grantee = owner)
         GROUP BY 1, 2) g
$$;

-- The members of the installed apikey.
CREATE VIEW regress_sec_members AS
SELECT d.classid, d.objid
  FROM pg_depend d
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'apikey'
 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
   -- the row types of tables and views and array types come with their
   -- relation or element type; PostgreSQL 18 records them as members, 15
   -- does not
   AND NOT EXISTS (SELECT FROM pg_type t LEFT JOIN pg_class c ON c.oid = t.typrelid
                    WHERE d.classid = 'pg_type'::regclass AND t.oid = d.objid
                      AND (t.typelem <> 0 OR c.relkind IN ('r', 'v')));

-- Functions: owner, SECURITY DEFINER, settings, who may execute.
CREATE VIEW regress_sec_functions AS
SELECT p.oid::regprocedure::text AS function,
       regress_sec_owner(p.proowner) AS owner,
       p.prosecdef AS secdef,
       p.proconfig AS config,
       regress_sec_acl(p.proacl, 'f', p.proowner) AS acl
  FROM regress_sec_members m
  JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid;

-- Tables, views and sequences: owner, who may do what.
CREATE VIEW regress_sec_relations AS
SELECT c.oid::regclass::text AS relation,
       CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'S' THEN 'sequence'
                      ELSE c.relkind::text END AS kind,
       regress_sec_owner(c.relowner) AS owner,
       c.relrowsecurity AS rls,
       c.reloptions AS options,
       regress_sec_acl(c.relacl, (CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END)::"char",
                       c.relowner) AS acl
  FROM regress_sec_members m
  JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid;

-- The rules, as counts of violations.
CREATE VIEW regress_sec_rules AS
SELECT (SELECT count(*) FROM regress_sec_members m
          JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
         WHERE p.prosecdef
           AND NOT EXISTS (SELECT FROM unnest(p.proconfig) c
                            WHERE c ~ '^search_path=.*\mpg_temp$'))
           AS secdef_without_pg_temp_last,
       (SELECT count(*) FROM regress_sec_members m
          JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
         WHERE p.prosecdef
           AND EXISTS (SELECT FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                        WHERE a.grantee = 0))
           AS secdef_public_may_execute,
       (SELECT count(*) FROM regress_sec_members m
          JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
         WHERE EXISTS (SELECT FROM aclexplode(coalesce(c.relacl,
                                              acldefault((CASE c.relkind WHEN 'S' THEN 's'
                                                                          ELSE 'r' END)::"char",
                                                         c.relowner))) a
                        WHERE a.grantee = 0))
           AS relations_public_may_use,
       (SELECT count(*) FROM regress_sec_members m
          JOIN pg_attribute a ON m.classid = 'pg_class'::regclass AND a.attrelid = m.objid
         WHERE a.attacl IS NOT NULL
           AND EXISTS (SELECT FROM aclexplode(a.attacl) x WHERE x.grantee = 0))
           AS columns_public_may_use;

-- ---------------------------------------------------------------------------
-- CREATE EXTENSION apikey: the default version
-- ---------------------------------------------------------------------------
CREATE EXTENSION apikey;
SELECT extversion FROM pg_extension WHERE extname = 'apikey';
-- every member object
SELECT pg_describe_object(classid, objid, 0) AS member
  FROM regress_sec_members ORDER BY 1;
SELECT * FROM regress_sec_functions ORDER BY 1;
SELECT * FROM regress_sec_relations ORDER BY 1;
SELECT * FROM regress_sec_rules;
DROP EXTENSION apikey;

-- ---------------------------------------------------------------------------
-- CREATE EXTENSION apikey VERSION '1.1' (the legacy security release)
-- ---------------------------------------------------------------------------
CREATE EXTENSION apikey VERSION '1.1';
SELECT extversion FROM pg_extension WHERE extname = 'apikey';
SELECT pg_describe_object(classid, objid, 0) AS member
  FROM regress_sec_members ORDER BY 1;
SELECT * FROM regress_sec_functions ORDER BY 1;
SELECT * FROM regress_sec_relations ORDER BY 1;
SELECT * FROM regress_sec_rules;
DROP EXTENSION apikey;

-- ---------------------------------------------------------------------------
-- Updates end in the same privileges: 2.0 -> 2.1, 1.0 -> 1.1, 1.1 -> 2.1.
-- (The listings are compared, not printed again.)
-- ---------------------------------------------------------------------------
CREATE EXTENSION apikey VERSION '2.1';
CREATE TEMP TABLE regress_sec_fresh_21 AS
    SELECT 'f' AS k, function AS name, owner, secdef::text, config::text, acl FROM regress_sec_functions
    UNION ALL
    SELECT 'r', relation, owner, rls::text, options::text, acl FROM regress_sec_relations;
DROP EXTENSION apikey;
CREATE EXTENSION apikey VERSION '1.1';
CREATE TEMP TABLE regress_sec_fresh_11 AS
    SELECT 'f' AS k, function AS name, owner, secdef::text, config::text, acl FROM regress_sec_functions
    UNION ALL
    SELECT 'r', relation, owner, rls::text, options::text, acl FROM regress_sec_relations;
DROP EXTENSION apikey;

CREATE FUNCTION regress_sec_differences(fresh regclass)
    RETURNS TABLE(side text, k text, name text, owner text, secdef text, config text, acl text)
    LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY EXECUTE format($q$
        WITH now AS (
            SELECT 'f' AS k, function AS name, owner, secdef::text, config::text, acl FROM regress_sec_functions
            UNION ALL
            SELECT 'r', relation, owner, rls::text, options::text, acl FROM regress_sec_relations)
        (SELECT 'updated only', * FROM now EXCEPT SELECT 'updated only', * FROM %1$s)
        UNION ALL
        (SELECT 'fresh only', * FROM %1$s EXCEPT SELECT 'fresh only', * FROM now)
        ORDER BY 3, 1 $q$, fresh);
END
$$;

CREATE EXTENSION apikey VERSION '2.0';
ALTER EXTENSION apikey UPDATE TO '2.1';
SELECT * FROM regress_sec_differences('regress_sec_fresh_21');
SELECT * FROM regress_sec_rules;
DROP EXTENSION apikey;

CREATE EXTENSION apikey VERSION '1.0';
ALTER EXTENSION apikey UPDATE TO '1.1';
SELECT * FROM regress_sec_differences('regress_sec_fresh_11');
SELECT * FROM regress_sec_rules;
SET apikey.org_mapping = 'SELECT ''u1'' AS user_id, ''acme'' AS org_id';
ALTER EXTENSION apikey UPDATE TO '2.1';
RESET apikey.org_mapping;
SELECT * FROM regress_sec_differences('regress_sec_fresh_21');
SELECT * FROM regress_sec_rules;
DROP EXTENSION apikey;

-- ---------------------------------------------------------------------------
-- Clean up
-- ---------------------------------------------------------------------------
DROP FUNCTION regress_sec_differences(regclass);
DROP VIEW regress_sec_rules, regress_sec_relations, regress_sec_functions, regress_sec_members;
DROP FUNCTION regress_sec_acl(aclitem[], "char", oid);
DROP FUNCTION regress_sec_owner(oid);
