"""jobs.storage: paths inside local folders and bucket URIs (the search's --storage)."""
from jobs import storage


def test_join_keeps_a_uri_query_and_local_paths():
    assert storage.join("/runs/ray/", "exp") == "/runs/ray/exp"
    assert storage.join("s3://b/p", "exp", "x") == "s3://b/p/exp/x"
    endpoint = "s3://b/p?endpoint_override=http://127.0.0.1:9000"
    assert storage.join(endpoint, "exp") == "s3://b/p/exp?endpoint_override=http://127.0.0.1:9000"
    assert storage.settings_uri("s3://b/p/", "n") == "s3://b/p/n-search.yaml"
    assert storage.is_remote("gs://b") and not storage.is_remote("/tmp/x")


def test_text_round_trip_and_a_missing_file(tmp_path):
    uri = str(tmp_path / "a.yaml")
    assert storage.read_text(uri) is None
    storage.write_text(uri, "x: 1\n")
    assert storage.read_text(uri) == "x: 1\n"
