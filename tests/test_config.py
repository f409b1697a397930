"""Config validation: a working example, and errors that name the key and the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from borderline.config import ConfigError, example_config, load_config, parse_config


def test_example_config_is_valid_with_two_regions(tmp_path: Path) -> None:
    config = parse_config(example_config(tmp_path))
    assert config.region_ids == ["us-east", "eu-dublin"]
    assert config.custodian(config.region("eu-dublin").custodian).jurisdiction == "IE"
    assert config.region("us-east").smtp.port == 2525


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('location = "IE"', 'location = "Ireland"', "borderline.toml:33: regions.1.location"),
        ('smtp = "127.0.0.1:2525"', 'smtp = "nowhere"', "borderline.toml:24: regions.0.smtp"),
        ('smtp = "127.0.0.1:2525"', 'smtp = "127.0.0.1:²"', "expected host:port"),
        ('smtp = "127.0.0.1:2525"', 'smtp = "127.0.0.1:70000"', "expected host:port"),
        ('location = "US"', 'location = "US"\nstore = "mysql://x"', "regions.0.store"),
        ('custodian = "ie-custodian"', 'custodian = "nobody"', "'nobody' is not a custodian id"),
        ("max_message_size = 26214400", "max_size = 1", "borderline.toml:8: cloud.max_size"),
        ('jurisdiction = "US"', 'jurisdiction = "usa"', "borderline.toml:13: custodians.0"),
    ],
)
def test_errors_name_the_key_and_line(tmp_path: Path, old: str, new: str, expected: str) -> None:
    text = example_config(tmp_path)
    assert old in text
    with pytest.raises(ConfigError) as error:
        parse_config(text.replace(old, new, 1))
    assert expected in str(error.value)


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_config("[cloud\n")
    with pytest.raises(ConfigError, match="borderline init"):
        load_config(tmp_path / "absent.toml")


def test_relative_data_dir_is_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "borderline.toml"
    path.write_text(example_config(Path("data")))
    assert load_config(path).cloud.data_dir == tmp_path / "data"


def test_witnesses_per_region_and_their_quorum(tmp_path: Path) -> None:
    from borderline.tlog.witnesskey import create_witness_key

    key = create_witness_key(tmp_path / "w", "w.example.test/1")
    text = example_config(tmp_path)
    listed = f'[[regions.witnesses]]\nurl = "http://127.0.0.1:2600/"\nkey = "{key}"\n'
    config = parse_config(text.replace("\n[api]\n", f"\n{listed}\n[api]\n"))
    dublin = config.region("eu-dublin")
    assert dublin.witnesses[0].url == "http://127.0.0.1:2600" and dublin.quorum == 1
    assert config.region("us-east").quorum == 0
    for bad, expected in (
        (f"witness_quorum = 2\n{listed}", "witness_quorum 2 is more than the 1 witnesses"),
        (listed.replace(key, "w+00000000+AA=="), "regions.1.witnesses.0.key"),
        (listed.replace("http://127.0.0.1:2600/", "ftp://x"), "is not an http:// or https://"),
    ):
        with pytest.raises(ConfigError, match=expected):
            parse_config(text.replace("\n[api]\n", f"\n{bad}\n[api]\n"))


def test_one_dns_section_and_the_deprecated_keys_still_read(tmp_path: Path) -> None:
    text = example_config(tmp_path)
    config = parse_config(text + '\n[dns]\nservers = ["127.0.0.1"]\nport = 5353\n')
    assert (config.dns.servers, config.dns.port) == (["127.0.0.1"], 5353)
    assert parse_config(text).dns.servers == [], "the system's resolvers"
    # The keys [inbound] and [outbound] had each, before [dns]: read as [dns], when they agree.
    old = parse_config(
        text + '\n[inbound]\ndns_servers = ["::1"]\n\n[outbound]\ndns_servers = ["::1"]\n'
        "dns_port = 5353\n"
    )
    assert (old.dns.servers, old.dns.port) == (["::1"], 5353)
    for extra, named in (
        ("[inbound]\ndns_port = 53\n\n[outbound]\ndns_port = 5353\n", "[inbound] dns_port"),
        ('[dns]\nservers = ["::1"]\n\n[outbound]\ndns_servers = ["::2"]\n', "[dns] servers"),
    ):
        with pytest.raises(ConfigError) as error:
            parse_config(text + "\n" + extra)
        assert "(deprecated: now [dns]" in str(error.value) and named in str(error.value)
    with pytest.raises(ConfigError, match="'nowhere' is not an IP address"):
        parse_config(text + '\n[dns]\nservers = ["nowhere"]\n')
