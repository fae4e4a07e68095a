"""The command line's dispatch: every subcommand has its function, and nothing else is accepted."""

from __future__ import annotations

import argparse

import pytest

from imgclf import cli


def subcommands() -> set[str]:
    actions = [action for action in cli.parser()._actions if isinstance(action, argparse._SubParsersAction)]
    return set(actions[0].choices)


def test_every_subcommand_has_its_function_and_no_other_is_listed():
    assert set(cli.COMMANDS) == subcommands()


def test_an_unknown_command_is_an_error_not_a_fall_through(capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["leaderboard"])
    assert stopped.value.code == 2
    assert "invalid choice: 'leaderboard'" in capsys.readouterr().err
