"""Where an HDFS sink task resumes, from the offsets in its files' names."""

from __future__ import annotations

from kanal_worker.connectors.hdfs.task import resume_offset


def test_past_the_last_file_when_the_committed_offset_is_in_their_unbroken_run() -> None:
    files = [(0, 99), (100, 199), (200, 249), (250, 349)]
    assert resume_offset(files, 200) == 350  # renamed, then killed before the commit
    assert resume_offset(files, 0) == 350
    assert resume_offset(files, 350) == 350
    assert resume_offset(files, None) == 350  # nothing committed: as kafka-connect-hdfs


def test_from_the_committed_offset_when_a_file_may_be_missing() -> None:
    # 100..199 is not in a file: it may be a file that was never renamed
    assert resume_offset([(0, 99), (200, 299)], 100) is None
    assert resume_offset([(0, 99), (200, 299)], 0) is None
    # two runs cut the same records differently: the newest file holds them all
    assert resume_offset([(0, 99), (50, 149)], 100) == 150
    assert resume_offset([(0, 99), (50, 149)], 20) is None


def test_companions_and_no_files() -> None:
    assert resume_offset([(0, 9), (0, 9), (10, 19), (10, 19)], 10) == 20
    assert resume_offset([], 5) is None
    assert resume_offset([], None) is None
