-- Row 7o's flood: the same malformed tokens, all from one client address
-- (one per-address counter): the baseline the random-address flood is
-- compared with.
SELECT v.code FROM apikey_verify('ak_live_flood', '{}', '10.0.0.1') v;
