-- Term frequencies for probabilistic matching (matching.TermFrequencies): how many stored
-- offline records hold each value of first name, last name (first surname) and postcode, so
-- that agreeing on a rare value weighs more than agreeing on a common one. Each record keeps
-- the (field, value) keys it is counted under ('field:value'); statement triggers keep the
-- counts equal to the records in match_records, whichever statement inserts or deletes them
-- (a new record, a merge folding duplicates, a forget).
ALTER TABLE match_records ADD COLUMN tf_keys text[] NOT NULL DEFAULT '{}';

CREATE TABLE match_term_counts (
    field text   NOT NULL,
    value text   NOT NULL,
    n     bigint NOT NULL CHECK (n >= 0),
    PRIMARY KEY (field, value)
);
CREATE TABLE match_term_totals (
    field text   PRIMARY KEY,
    n     bigint NOT NULL CHECK (n >= 0)
);

-- Rows are upserted in (field, value) order, so concurrent resolvers lock them in one order.
CREATE FUNCTION match_terms_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO match_term_counts (field, value, n)
    SELECT split_part(k, ':', 1), substr(k, strpos(k, ':') + 1), count(*)
    FROM added_rows, unnest(tf_keys) k GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (field, value) DO UPDATE SET n = match_term_counts.n + excluded.n;
    INSERT INTO match_term_totals (field, n)
    SELECT split_part(k, ':', 1), count(*) FROM added_rows, unnest(tf_keys) k GROUP BY 1 ORDER BY 1
    ON CONFLICT (field) DO UPDATE SET n = match_term_totals.n + excluded.n;
    RETURN NULL;
END $$;

CREATE FUNCTION match_terms_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM match_term_counts c
        WHERE (c.field, c.value) IN (SELECT split_part(k, ':', 1), substr(k, strpos(k, ':') + 1)
                                     FROM removed_rows, unnest(tf_keys) k)
        ORDER BY c.field, c.value FOR UPDATE;
    UPDATE match_term_counts c SET n = c.n - g.n
        FROM (SELECT split_part(k, ':', 1) AS field, substr(k, strpos(k, ':') + 1) AS value, count(*) AS n
              FROM removed_rows, unnest(tf_keys) k GROUP BY 1, 2) g
        WHERE c.field = g.field AND c.value = g.value;
    DELETE FROM match_term_counts c
        WHERE c.n = 0 AND (c.field, c.value) IN (SELECT split_part(k, ':', 1), substr(k, strpos(k, ':') + 1)
                                                 FROM removed_rows, unnest(tf_keys) k);
    PERFORM 1 FROM match_term_totals t
        WHERE t.field IN (SELECT split_part(k, ':', 1) FROM removed_rows, unnest(tf_keys) k)
        ORDER BY t.field FOR UPDATE;
    UPDATE match_term_totals t SET n = t.n - g.n
        FROM (SELECT split_part(k, ':', 1) AS field, count(*) AS n FROM removed_rows, unnest(tf_keys) k GROUP BY 1) g
        WHERE t.field = g.field;
    RETURN NULL;
END $$;

CREATE TRIGGER match_records_terms_added AFTER INSERT ON match_records
    REFERENCING NEW TABLE AS added_rows FOR EACH STATEMENT EXECUTE FUNCTION match_terms_added();
CREATE TRIGGER match_records_terms_removed AFTER DELETE ON match_records
    REFERENCING OLD TABLE AS removed_rows FOR EACH STATEMENT EXECUTE FUNCTION match_terms_removed();
