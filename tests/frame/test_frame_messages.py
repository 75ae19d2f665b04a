"""What a frame user reads when something is refused: the frame API's words (run options,
source parameters, the method called), never the CLI's flags, SQL DDL or internal names."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import caudal as cd
from caudal.checkpoint.errors import IncompatibleCheckpoint, JobFinished
from caudal.errors import CaudalError, PlanError
from caudal.frame import col


def _parquet_source(tmp_path):
    pq.write_table(pa.table({"k": [1, 2, 1], "v": [5, 3, 4]}), tmp_path / "in.parquet")
    return cd.read_parquet(str(tmp_path / "in.parquet"))


def test_a_finished_job_says_the_run_option_not_the_cli_flag(tmp_path):
    src = _parquet_source(tmp_path)
    ck = str(tmp_path / "ck")
    assert src.collect(checkpoint_dir=ck).num_rows == 3
    for again in (lambda: src.collect(checkpoint_dir=ck),
                  lambda: list(src.stream(checkpoint_dir=ck))):
        with pytest.raises(JobFinished, match=r"run with fresh=True to run it again") as e:
            again()
        assert "--" not in str(e.value)
    assert src.collect(checkpoint_dir=ck, fresh=True).num_rows == 3  # as the message says


def test_a_refused_checkpoint_directory_says_run_options_and_is_freed(tmp_path):
    ck = str(tmp_path / "ck")
    _parquet_source(tmp_path).collect(checkpoint_dir=ck)
    other = _parquet_source(tmp_path).filter(col("v") > 3)
    for _ in range(2):  # the refusal leaves the directory unlocked: the same refusal again
        with pytest.raises(IncompatibleCheckpoint) as e:
            other.collect(checkpoint_dir=ck)
        said = str(e.value)
        assert "fresh=True" in said and "checkpoint_dir" in said
        assert "--" not in said and "_f" not in said, said
    assert other.collect(checkpoint_dir=ck, fresh=True).num_rows == 2


def test_over_without_event_time_says_the_source_parameter():
    src = cd.testing.from_records({"k": [1, 2, 1], "v": [5, 3, 4]})
    with pytest.raises(PlanError) as e:
        src.with_columns(col("v").sum().over("k", order_by="v", rows="unbounded").alias("s")) \
            .collect()
    said = str(e.value)
    assert "WATERMARK" not in said and "event_time=" in said and "order_by=" in said, said


def test_sink_errors_name_the_method_called_not_the_internal_table(tmp_path):
    src = cd.testing.from_records({"k": [1, 2, 1]})
    (tmp_path / "file").write_text("")
    target = str(tmp_path / "file" / "out")
    cases = [(lambda: src.write_parquet(target), f"write_parquet({target!r}): "),
             (lambda: src.sink("kafka", topic="t"), "sink('kafka'): "),
             (lambda: src.sink("filesystem", path=str(tmp_path / "o"), format="nope"),
              "sink('filesystem'): ")]
    for run, said in cases:
        with pytest.raises(CaudalError) as e:
            run()
        assert str(e.value).startswith(said), str(e.value)
        assert "__caudal" not in str(e.value) and "line " not in str(e.value)


def test_common_mistakes_are_one_line_saying_what_to_do():
    """Polars suggests the close column names and names the join keys whose types differ;
    so do frames, in one line, and the fix is said in the frame API (.cast, not CAST)."""
    src = cd.testing.from_records({"price": [1, 2], "name": ["a", "b"]})
    other = cd.testing.from_records({"price": ["1", "2"], "w": [1, 2]})
    cases = [(lambda: src.filter(col("prise") > 1), "filter(): unknown column 'prise'",
              "did you mean 'price'?"),
             (lambda: src.select("nme"), "select(): unknown column 'nme'", "did you mean 'name'?"),
             (lambda: src.drop("prise"), "drop(): unknown column 'prise'", "did you mean 'price'?"),
             (lambda: src.sort("prise"), "sort(): unknown column 'prise'",
              "did you mean 'price'?"),
             (lambda: src.join(other, on="pric"), "join(): unknown left column 'pric'",
              "did you mean 'price'?"),
             (lambda: src.join(other, on="price"),
              "join(): key 'price' is BIGINT on the left, 'price' is TEXT on the right",
              ".with_columns(col('price').cast('BIGINT'))"),
             (lambda: src.filter(col("name") > 1), "filter(): comparison > mixes types",
              '.cast("BIGINT")')]
    for mistake, said, advice in cases:
        with pytest.raises(PlanError) as e:
            mistake()
        text = str(e.value)
        assert text.startswith(said) and advice in text and "\n" not in text, text
        assert "CAST(" not in text and "__" not in text, text


def test_cli_sentences_in_the_frame_api_words():
    """Messages shared with ``caudal run`` (checkpoints, Ray shipping, sinks) as they reach
    a frame user: no flag left, values kept."""
    from caudal.frame.text import python_words

    for cli, frame in [
            ("resume with --parallelism 4, the parallelism", "resume with parallelism=4, the"),
            ("run with --from-epoch 3; --fresh starts over", "run with from_epoch=3; fresh=True"),
            ("cannot create --checkpoint-dir /x: denied", "cannot create checkpoint_dir /x"),
            ("--max-restarts allows more", "max_restarts allows more"),
            ("run it with --runtime local", 'run it with runtime="local"'),
            ("define it at module level (in a --udf file or an importable module)",
             "define it at module level (in an importable module)")]:
        said = python_words(cli)
        assert said.startswith(frame) and "--" not in said, said


def test_the_same_query_built_again_in_one_process_is_the_same_job(tmp_path):
    """A notebook cell run twice builds its frames again: the same query is the same job (its
    checkpoints resume or say it finished), not 'a different job ([0] a source changed)' for
    a new internal frame name."""
    pq.write_table(pa.table({"k": [1, 2, 1], "v": [5, 3, 4]}), tmp_path / "in.parquet")
    ck, out = str(tmp_path / "ck"), str(tmp_path / "out")

    def cell():
        return cd.read_parquet(str(tmp_path / "in.parquet")).filter(col("v") > 3)

    first, again = cell(), cell()
    assert again.sql_script() == first.sql_script()
    assert first.write_parquet(out, checkpoint_dir=ck) is not None
    assert again.write_parquet(out, checkpoint_dir=ck) is None  # finished: nothing to do
    assert cell().collect(checkpoint_dir=str(tmp_path / "ck2")).num_rows == 2
    with pytest.raises(JobFinished):
        cell().collect(checkpoint_dir=str(tmp_path / "ck2"))
    other = cd.read_parquet(str(tmp_path / "in.parquet")).filter(col("v") > 4)
    assert other.name != first.name  # another query, another name


def test_sql_naming_a_frame_not_given_lists_the_names_given(tmp_path):
    """cd.sql("… FROM b", c=frame) listed the frames' internal names ('tables and views: _f4,
    _f7'), which the user never wrote."""
    src = _parquet_source(tmp_path)
    with pytest.raises(PlanError) as e:
        cd.sql("SELECT * FROM b", c=src, d=src.filter(col("v") > 3))
    said = str(e.value)
    assert said == ("sql(): unknown table 'b' (frames given: c, d; name each by keyword, "
                    "cd.sql(query, b=frame))"), said
    with pytest.raises(PlanError, match=r"frames given: \(none\)"):
        cd.sql("SELECT * FROM b")
