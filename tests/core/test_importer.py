from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, text

from cskpi.connectors import base
from cskpi.core.importer import (
    ImportFileError,
    ImportResult,
    import_accounts,
    import_ratings,
)
from cskpi.core.store.engine import open_engine, write_transaction
from cskpi.core.store.upserts import upsert_records
from tests.fakes import ticket

BERLIN = ZoneInfo("Europe/Berlin")
CREATED_77 = datetime(2024, 5, 1, tzinfo=UTC)

# Epochs worked out by hand (Berlin is UTC+1 in winter, UTC+2 in summer):
MAR_2_1030_BERLIN = 1772443800  # 2026-03-02T09:30Z
JUL_1_0800_BERLIN = 1782885600  # 2026-07-01T06:00Z
MAR_2_BERLIN_MIDNIGHT = 1772406000  # 2026-03-01T23:00Z
JAN_1_2026_BERLIN = 1767222000  # 2025-12-31T23:00Z
FEB_1_2026_BERLIN = 1769900400  # 2026-01-31T23:00Z
JAN_1_2025_BERLIN = 1735686000  # 2024-12-31T23:00Z


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return seeded(open_engine("sqlite:///" + str(tmp_path / "t.db")))


def seeded(engine: Engine) -> Engine:
    with write_transaction(engine) as conn:
        upsert_records(
            conn,
            "zd",
            [
                ticket(123),
                base.Person("a1", "agent", "Ana"),
                base.Organization("77", "Acme GmbH", CREATED_77),
                base.Organization("78", "Globex"),
            ],
        )
    return engine


def write(tmp_path: Path, body: str | bytes, name: str = "in.csv") -> Path:
    path = tmp_path / name
    if isinstance(body, str):
        path.write_text(body, encoding="utf-8")
    else:
        path.write_bytes(body)
    return path


def rows(engine: Engine, sql: str) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


RATING_COLUMNS = (
    "id, connector, kind, score, scale_min, scale_max, rated_at, ticket_id, agent_id, comment"
)


def ratings(engine: Engine) -> list[tuple[object, ...]]:
    return rows(engine, f"SELECT {RATING_COLUMNS} FROM rating ORDER BY id")


def organizations(engine: Engine) -> list[tuple[object, ...]]:
    sql = "SELECT id, connector, external_id, name, mrr, created_at, churned_at FROM organization"
    return rows(engine, sql + " ORDER BY id")


# --- ratings ----------------------------------------------------------------------------


def test_ratings_are_stored_with_full_ids_and_local_times(engine: Engine, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "ID,Kind,Score,Scale_Min,Scale_Max,Rated_At,Ticket,Agent,Requester,Comment\n"
        's1,csat,4,1,5,2026-03-02T10:30,zd:123,zd:a1,bob@example.com,"quick, kind"\n'
        "s2,NPS,9,,,2026-07-01 08:00,,,,\n"
        "s3,ces,2.5,1,7,2026-03-02T10:30:00+01:00,,zd:a1,,\n",
    )
    result = import_ratings(engine, path, BERLIN)
    assert result == ImportResult(path, rows=3, created=3, updated=0)
    assert ratings(engine) == [
        ("import:s1", "import", "csat", 4.0, 1.0, 5.0, MAR_2_1030_BERLIN, "zd:123", "zd:a1",
         "quick, kind"),
        ("import:s2", "import", "nps", 9.0, 0.0, 10.0, JUL_1_0800_BERLIN, None, None, None),
        ("import:s3", "import", "ces", 2.5, 1.0, 7.0, MAR_2_1030_BERLIN, None, "zd:a1", None),
    ]  # fmt: skip


def test_scales_default_by_kind_and_a_date_is_local_midnight(
    engine: Engine, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "id,kind,score,rated_at\n"
        "a,csat,5,2026-03-02\n"
        "b,nps,0,2026-03-02\n"
        "c,ces,7,2026-03-02\n"
        "d,esat,1,2026-03-02\n",
    )
    import_ratings(engine, path, BERLIN)
    got = rows(engine, "SELECT id, kind, scale_min, scale_max, rated_at FROM rating ORDER BY id")
    assert got == [
        ("import:a", "csat", 1.0, 5.0, MAR_2_BERLIN_MIDNIGHT),
        ("import:b", "nps", 0.0, 10.0, MAR_2_BERLIN_MIDNIGHT),
        ("import:c", "ces", 1.0, 7.0, MAR_2_BERLIN_MIDNIGHT),
        ("import:d", "esat", 1.0, 5.0, MAR_2_BERLIN_MIDNIGHT),
    ]


def test_an_explicit_scale_overrides_the_default(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "id,kind,score,scale_min,scale_max,rated_at\nx,csat,9,0,10,2026-03-02\n")
    import_ratings(engine, path, UTC)
    assert rows(engine, "SELECT score, scale_min, scale_max FROM rating") == [(9.0, 0.0, 10.0)]


def test_source_names_the_connector_and_prefixes_ids(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "id,kind,score,rated_at,ticket\n7,nps,10,2026-03-02,zd:123\n")
    import_ratings(engine, path, UTC, source="typeform")
    assert rows(engine, "SELECT id, connector, ticket_id FROM rating") == [
        ("typeform:7", "typeform", "zd:123")
    ]


def test_reimport_without_ids_changes_nothing(engine: Engine, tmp_path: Path) -> None:
    body = (
        "kind,score,rated_at,requester\n"
        "csat,5,2026-03-02T10:30,ann@example.com\n"
        "csat,5,2026-03-02T10:30,bob@example.com\n"
        "nps,3,2026-03-02T10:30,\n"
        "nps,3,2026-03-02T10:30,\n"
    )
    path = write(tmp_path, body)
    assert import_ratings(engine, path, BERLIN) == ImportResult(path, 4, created=4, updated=0)
    first = ratings(engine)
    # The same file again: unchanged, not "4 updated" (issue 23, item 22).
    assert import_ratings(engine, path, BERLIN) == ImportResult(path, 4, 0, 0, unchanged=4)
    assert ratings(engine) == first
    ids = [r[0] for r in first]
    assert len(set(ids)) == 4  # the requester tells answers apart; true repeats are numbered
    assert all(str(i).startswith("import:row-") for i in ids)
    assert sum(str(i).endswith("-2") for i in ids) == 1


def test_derived_id_follows_the_answer_not_its_spelling(engine: Engine, tmp_path: Path) -> None:
    first = write(tmp_path, "kind,score,rated_at\nces,5,2026-03-02T10:30\n", "a.csv")
    same = write(
        tmp_path,
        "kind,score,scale_min,scale_max,rated_at\nCES,5.0,1,7,2026-03-02T09:30Z\n",
        "b.csv",
    )
    import_ratings(engine, first, BERLIN)
    assert import_ratings(engine, same, BERLIN) == ImportResult(same, 1, 0, 0, unchanged=1)
    assert len(ratings(engine)) == 1


RATING_HEADER = "id,kind,score,scale_min,scale_max,rated_at,ticket,agent\n"
GOOD_ROW = "ok,csat,5,,,2026-03-02,zd:123,zd:a1\n"


@pytest.mark.parametrize(
    ("last_row", "column", "reason"),
    [
        ("x,smiley,5,,,2026-03-02,,", "kind", "'smiley' is not one of csat, nps, ces, esat"),
        ("x,csat,6,,,2026-03-02,,", "score", "6 is outside the csat scale 1-5"),
        ("x,csat,0,,,2026-03-02,,", "score", "0 is outside the csat scale 1-5"),
        ("x,nps,7.5,,,2026-03-02,,", "score", "nps scores are whole numbers 0-10, not 7.5"),
        ("x,nps,11,,,2026-03-02,,", "score", "11 is outside the nps scale 0-10"),
        ("x,nps,5,1,10,2026-03-02,,", "scale_min", "nps is always on the 0-10 scale, not 1-10"),
        ("x,csat,3,5,5,2026-03-02,,", "scale_max", "5 is not above scale_min 5"),
        ("x,csat,4,1,5,2026-02-30,,", "rated_at",
         "'2026-02-30' is not an ISO date or datetime such as 2025-03-01 or 2025-03-01T14:30"),
        ("x,csat,4,1,5,30d,,", "rated_at",
         "'30d' is not an ISO date or datetime such as 2025-03-01 or 2025-03-01T14:30"),
        ("x,csat,4,1,5,,,", "rated_at", "is empty"),
        ("x,csat,four,1,5,2026-03-02,,", "score",
         "'four' is not a number (decimals take a dot: 4.5)"),
        ("x,csat,4,,,2026-03-02,zd:999,", "ticket",
         "no ticket 'zd:999' is stored (ids look like acme-zendesk:123)"),
        ("x,csat,4,,,2026-03-02,123,", "ticket",
         "no ticket '123' is stored (ids look like acme-zendesk:123)"),
        ("x,csat,4,,,2026-03-02,,zd:nobody", "agent",
         "no person 'zd:nobody' is stored (ids look like acme-zendesk:123)"),
        ("ok,csat,4,,,2026-03-02,,", "id", "'ok' is already the id on line 2"),
    ],
)  # fmt: skip
def test_a_bad_last_row_fails_the_file_naming_its_line(
    engine: Engine, tmp_path: Path, last_row: str, column: str, reason: str
) -> None:
    path = write(tmp_path, RATING_HEADER + GOOD_ROW + GOOD_ROW.replace("ok,", "ok2,") + last_row)
    with pytest.raises(ImportFileError) as caught:
        import_ratings(engine, path, BERLIN)
    assert str(caught.value) == f"{path}: line 4: column {column}: {reason}"
    assert (caught.value.line, caught.value.column) == (4, column)
    assert ratings(engine) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("id,kind,score,rated_at,mood,Extra\n", "line 1: unknown column 'mood', 'extra'; the "
         "columns are id, kind, score, scale_min, scale_max, rated_at, ticket, agent, requester, "
         "comment"),
        ("kind,rated_at\n", "line 1: missing required column score"),
        ("kind,score,Kind,rated_at\n", "line 1: column kind appears more than once"),
        ("", "line 1: the file is empty; the first line must be a header: id,kind,score,"
         "scale_min,scale_max,rated_at,ticket,agent,requester,comment"),
        ("\n\n", "line 1: the file is empty; the first line must be a header: id,kind,score,"
         "scale_min,scale_max,rated_at,ticket,agent,requester,comment"),
        ("kind,score,rated_at\n\n,,\n", "there is a header but no rows to import"),
    ],
)  # fmt: skip
def test_file_level_errors(engine: Engine, tmp_path: Path, body: str, message: str) -> None:
    path = write(tmp_path, body + ("csat,5,2026-03-02\n" if "column" in message else ""))
    with pytest.raises(ImportFileError) as caught:
        import_ratings(engine, path, UTC)
    assert str(caught.value) == f"{path}: {message}"
    assert ratings(engine) == []


def test_a_row_with_too_many_values_is_refused(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "kind,score,rated_at,comment\ncsat,5,2026-03-02,fast,friendly\n")
    with pytest.raises(ImportFileError, match=r"line 2: 5 values for 4 columns"):
        import_ratings(engine, path, UTC)


def test_line_numbers_count_lines_inside_quoted_values(engine: Engine, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'kind,score,rated_at,comment\ncsat,5,2026-03-02,"one\ntwo"\ncsat,9,2026-03-02,"three\nfour"\n',
    )
    with pytest.raises(ImportFileError) as caught:
        import_ratings(engine, path, UTC)
    assert (caught.value.line, caught.value.column) == (4, "score")  # where the row starts


def test_bom_and_semicolons_from_excel(engine: Engine, tmp_path: Path) -> None:
    body = "\ufeffKind;Score;Rated_at;Comment\ncsat;4;2026-03-02;Schnell, freundlich\n"
    path = write(tmp_path, body.encode("utf-8"))
    assert import_ratings(engine, path, UTC).created == 1
    assert rows(engine, "SELECT kind, comment FROM rating") == [("csat", "Schnell, freundlich")]


def test_bytes_that_are_not_utf8_name_their_line(engine: Engine, tmp_path: Path) -> None:
    body = "kind,score,rated_at,comment\ncsat,5,2026-03-02,ok\ncsat,5,2026-03-02,Gr\xfc\xdfe\n"
    path = write(tmp_path, body.encode("latin-1"))
    with pytest.raises(ImportFileError) as caught:
        import_ratings(engine, path, UTC)
    assert str(caught.value) == f"{path}: line 3: byte 0xfc is not UTF-8; save the file as UTF-8"


def test_a_missing_file_is_an_import_error(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match="No such file"):
        import_ratings(engine, tmp_path / "nope.csv", UTC)


# --- accounts ---------------------------------------------------------------------------


def test_accounts_by_id_and_by_name(engine: Engine, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "Organization,MRR,created_at,churned_at\n"
        "zd:77,1200.50,2025-01-01,2026-02-01\n"
        "  globex ,99,,\n",
    )
    assert import_accounts(engine, path, BERLIN) == ImportResult(path, 2, created=0, updated=2)
    assert organizations(engine) == [
        ("zd:77", "zd", "77", "Acme GmbH", 1200.5, JAN_1_2025_BERLIN, FEB_1_2026_BERLIN),
        ("zd:78", "zd", "78", "Globex", 99.0, None, None),
    ]


def test_a_name_matches_case_insensitively(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "organization,mrr\nACME gmbh,10\n")
    assert import_accounts(engine, path, UTC) == ImportResult(path, 1, created=0, updated=1)
    assert rows(engine, "SELECT mrr, created_at FROM organization WHERE id = 'zd:77'") == [
        (10.0, int(CREATED_77.timestamp()))  # no created_at column: the stored one stays
    ]


def test_an_unknown_name_creates_an_organization_once(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "organization,mrr,created_at\nNew Co. (EU),500,2026-01-01\n")
    assert import_accounts(engine, path, BERLIN) == ImportResult(path, 1, created=1, updated=0)
    new = ("import:new-co-eu", "import", "new-co-eu", "New Co. (EU)", 500.0, JAN_1_2026_BERLIN,
           None)  # fmt: skip
    assert organizations(engine)[0] == new
    assert import_accounts(engine, path, BERLIN) == ImportResult(path, 1, 0, 0, unchanged=1)
    assert organizations(engine)[0] == new
    assert len(organizations(engine)) == 3


def test_empty_cells_keep_mrr_and_clear_churn(engine: Engine, tmp_path: Path) -> None:
    import_accounts(
        engine, write(tmp_path, "organization,mrr,churned_at\nzd:77,300,2026-02-01\n"), UTC
    )
    import_accounts(engine, write(tmp_path, "organization,mrr,churned_at\nzd:77,,\n"), UTC)
    assert rows(engine, "SELECT mrr, churned_at FROM organization WHERE id = 'zd:77'") == [
        (300.0, None)
    ]  # fmt: skip


def test_a_name_shared_by_two_organizations_is_ambiguous(engine: Engine, tmp_path: Path) -> None:
    with write_transaction(engine) as conn:
        upsert_records(conn, "fd", [base.Organization("5", "acme  GMBH")])
    path = write(tmp_path, "organization,mrr\nGlobex,1\nAcme GmbH,2\n")
    with pytest.raises(ImportFileError) as caught:
        import_accounts(engine, path, UTC)
    assert str(caught.value) == (
        f"{path}: line 3: column organization: 'Acme GmbH' is the name of 2 organizations: "
        "fd:5, zd:77; use an id"
    )
    assert rows(engine, "SELECT count(*) FROM organization WHERE mrr IS NOT NULL") == [(0,)]


@pytest.mark.parametrize(
    ("last_row", "column", "reason"),
    [
        ("Acme GmbH,10,2026-03-01,2026-02-01", "churned_at",
         "2026-02-01 is before created_at 2026-03-01"),
        ("Acme GmbH,-1,,", "mrr", "-1 is negative"),
        ("Acme GmbH,lots,,", "mrr", "'lots' is not a number (decimals take a dot: 4.5)"),
        ("zd:999,10,,", "organization", "no organization 'zd:999' is stored"),
        ("zd:78,10,,", "organization", "zd:78 is already the organization of line 2"),
        ("Acme GmbH,10,yesterday,", "created_at",
         "'yesterday' is not an ISO date or datetime such as 2025-03-01 or 2025-03-01T14:30"),
        (",10,,", "organization", "is empty"),
        ("!!!,10,,", "organization", "'!!!' has no letters or digits to make an id of"),
    ],
)  # fmt: skip
def test_a_bad_account_fails_the_file(
    engine: Engine, tmp_path: Path, last_row: str, column: str, reason: str
) -> None:
    path = write(tmp_path, f"organization,mrr,created_at,churned_at\nglobex,5,,\n{last_row}\n")
    before = organizations(engine)
    with pytest.raises(ImportFileError) as caught:
        import_accounts(engine, path, UTC)
    assert str(caught.value) == f"{path}: line 3: column {column}: {reason}"
    assert organizations(engine) == before


def test_two_spellings_of_one_new_name_collide(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "organization\nNew Co\nnew-co\n")
    with pytest.raises(ImportFileError) as caught:
        import_accounts(engine, path, UTC)
    assert str(caught.value) == (
        f"{path}: line 3: column organization: import:new-co is already the organization of line 2"
    )
    assert len(organizations(engine)) == 2


def test_accounts_with_a_bom(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "\ufefforganization,mrr\nzd:77,42\n".encode())
    assert import_accounts(engine, path, UTC).updated == 1
    assert rows(engine, "SELECT mrr FROM organization WHERE id = 'zd:77'") == [(42.0,)]


def test_a_new_name_whose_id_is_taken_is_refused(engine: Engine, tmp_path: Path) -> None:
    import_accounts(engine, write(tmp_path, "organization\nNew Co\n", "a.csv"), UTC)
    path = write(tmp_path, "organization,mrr\nNew-Co,5\n", "b.csv")
    with pytest.raises(ImportFileError) as caught:
        import_accounts(engine, path, UTC)
    assert str(caught.value) == (
        f"{path}: line 2: column organization: 'New-Co' would be stored as import:new-co, "
        "the id of 'New Co'; use it"
    )


def test_a_reimport_counts_only_the_rows_whose_values_changed(
    store_url: str, tmp_path: Path
) -> None:
    engine = seeded(open_engine(store_url))
    ratings_csv = "id,kind,score,rated_at\n1,csat,4,2026-03-02\n2,csat,5,2026-03-02\n"
    path = write(tmp_path, ratings_csv, "r.csv")
    assert import_ratings(engine, path, UTC) == ImportResult(path, 2, 2, 0, 0)
    write(tmp_path, ratings_csv.replace("csat,4", "csat,3") + "3,nps,9,2026-03-03\n", "r.csv")
    assert import_ratings(engine, path, UTC) == ImportResult(path, 3, 1, 1, unchanged=1)
    accounts_csv = "organization,mrr,churned_at\nzd:77,100,\nGlobex,50,\n"
    path = write(tmp_path, accounts_csv, "a.csv")
    assert import_accounts(engine, path, UTC) == ImportResult(path, 2, 0, 2, 0)
    assert import_accounts(engine, path, UTC) == ImportResult(path, 2, 0, 0, unchanged=2)
    write(tmp_path, accounts_csv.replace("50,", "50,2026-03-01") + "Initech,7,\n", "a.csv")
    assert import_accounts(engine, path, UTC) == ImportResult(path, 3, 1, 1, unchanged=1)
