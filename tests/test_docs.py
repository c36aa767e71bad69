"""The README and the guides in docs/ show only commands that run, or at least parse.

Commands come from the ```bash / ```shell / ```sh blocks of README.md and docs/*.md (backslash
continuations joined, comments and lines that are no command skipped):

- ``python SCRIPT ...`` (also ``$(PY)``, ``.venv/bin/python``): the script exists, ``SCRIPT
  --help`` exits 0 (once per script), and every ``--option`` the docs give it is in that help;
- ``make TARGET [VAR=VALUE ...]``: ``make -n`` accepts it, so the target exists in the Makefile;
- ``bash tools/x.sh`` and ``tools/x.sh``: the script exists (and is executable when run directly);
- every repository path a command names (``configs/...``, ``tools/...``, ...) exists.

Relative links and pictures in the markdown point at files that exist, and at headings that exist
where they name one. The README stays short.
"""
import functools
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from tests.paths import ROOT

README = 'README.md'
GUIDES = ('get_started', 'train_test', 'models', 'kernels', 'deployment', 'analysis', 'speed',
          'reliability')
README_MAX_LINES = 260
SHELL_LANGUAGES = {'bash', 'shell', 'sh'}
PYTHONS = {'python', 'python3', '$(PY)', '${PY}', '$PY', '.venv/bin/python'}
# Programs the docs may show that this test has nothing further to check for.
OTHER_PROGRAMS = {'tensorboard', 'pip', 'git', 'cd', 'export', 'nvidia-smi'}
# Paths under these folders that a command names must exist (outputs go to work_dirs/, data/,
# checkpoints/, outputs/ or docs/figures/, which need not exist).
CHECKED_FOLDERS = ('configs/', 'tools/', 'demo/', 'tests/', 'kernels/', 'vmamba_mm/')
# A token with one of these is a placeholder (vmamba-<arch>_..., {a,b}, *.py, ...), not a path.
PLACEHOLDER_MARKS = ('<', '>', '{', '}', '*', '...', '|')
HELP_TIMEOUT = 60  # seconds; the tools import the mm packages before argparse runs
ENV_ASSIGNMENT = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*=')
OPTION = re.compile(r'^--[A-Za-z][\w-]*')


def _markdown_files():
    return [README] + [os.path.join('docs', f'{name}.md') for name in GUIDES
                       if os.path.exists(os.path.join(ROOT, 'docs', f'{name}.md'))] + sorted(
        os.path.relpath(path, ROOT) for path in glob.glob(os.path.join(ROOT, 'docs', '*.md'))
        if os.path.splitext(os.path.basename(path))[0] not in GUIDES)


def _read(relpath):
    with open(os.path.join(ROOT, relpath), encoding='utf-8') as f:
        return f.read()


def split_fences(text):
    """[(language or None for prose, first line number, lines)] in order: the fenced blocks
    (language '' when none is given) and the prose between them."""
    parts, lines, language, start = [], [], None, 1
    for number, line in enumerate(text.splitlines(), 1):
        fence = re.match(r'^\s*```\s*([\w+-]*)', line)
        if fence:
            parts.append((language, start, lines))
            language = fence.group(1).lower() if language is None else None
            lines, start = [], number + 1
        else:
            lines.append(line)
    parts.append((language, start, lines))
    return [part for part in parts if part[2]]


def shell_commands(text):
    """[(line number, command)] of the shell blocks: continuations joined, comments, prompts
    ('$ ') and blank lines removed."""
    commands = []
    for language, start, lines in split_fences(text):
        if language not in SHELL_LANGUAGES:
            continue
        pending, first = '', None
        for number, line in enumerate(lines, start):
            stripped = line.strip()
            if not pending and (not stripped or stripped.startswith('#')):
                continue
            if first is None:
                first = number
            if stripped.endswith('\\'):
                pending += stripped[:-1].rstrip() + ' '
                continue
            command = (pending + stripped).strip()
            if command.startswith('$ '):
                command = command[2:]
            commands.append((first, command))
            pending, first = '', None
        if pending:
            commands.append((first, pending.strip()))
    return commands


def tokens(command):
    try:
        words = shlex.split(command, comments=True)
    except ValueError:  # an unbalanced quote in a placeholder: fall back to plain words
        words = command.split('#', 1)[0].split()
    while words and ENV_ASSIGNMENT.match(words[0]):
        words = words[1:]
    return words


def bare(word):
    """A word without the brackets, parentheses and bars of a usage line."""
    return word.strip('[]()|')


def classify(words):
    """('python', script, options) / ('module', name, None) / ('make', args, None) /
    ('script', path, run_directly) / ('other', program, None) / None (not a command)."""
    if not words:
        return None
    program = words[0]
    if program in PYTHONS:
        if len(words) > 1 and words[1] == '-m':
            return ('module', words[2] if len(words) > 2 else '', None)
        script = words[1] if len(words) > 1 else ''
        options = sorted({OPTION.match(bare(w)).group(0) for w in words[2:]
                          if OPTION.match(bare(w))})
        return ('python', script, options)
    if program == 'make':
        return ('make', words[1:], None)
    if program in ('bash', 'sh'):
        return ('script', words[1] if len(words) > 1 else '', False)
    if program.endswith('.sh'):
        return ('script', program, True)
    if program in OTHER_PROGRAMS:
        return ('other', program, None)
    return None


@functools.lru_cache(maxsize=None)
def all_commands():
    """[(markdown file, line, command, words, kind)] of every recognised command."""
    found = []
    for relpath in _markdown_files():
        for line, command in shell_commands(_read(relpath)):
            words = tokens(command)
            kind = classify(words)
            if kind is not None:
                found.append((relpath, line, command, words, kind))
    return found


def python_scripts():
    """{script: {option: [where it is shown]}} of every ``python SCRIPT`` command."""
    scripts = {}
    for relpath, line, _, _, kind in all_commands():
        if kind[0] == 'python':
            options = scripts.setdefault(kind[1], {})
            for option in kind[2]:
                options.setdefault(option, []).append(f'{relpath}:{line}')
    return scripts


def test_the_guides_exist():
    missing = [name for name in GUIDES if not os.path.exists(os.path.join(ROOT, 'docs',
                                                                          f'{name}.md'))]
    assert not missing, f'docs/ lacks {missing}'


def test_readme_is_short():
    lines = _read(README).count('\n')
    assert lines <= README_MAX_LINES, (f'README.md has {lines} lines (at most {README_MAX_LINES}):'
                                       ' move guide material into docs/')


def test_the_docs_show_commands():
    kinds = {kind[0] for _, _, _, _, kind in all_commands()}
    assert {'python', 'make', 'script'} <= kinds, kinds


def test_command_extraction():
    text = ('prose\n```bash\n# a comment\nmake test   # lint and test\n'
            'python tools/train.py CONFIG [--work-dir DIR] \\\n    [--amp]\n'
            '$ VAR=1 python tools/test.py A B --tta\n```\n```text\npython not/a/command.py\n```\n')
    commands = shell_commands(text)
    assert [line for line, _ in commands] == [4, 5, 7]
    assert commands[1][1] == 'python tools/train.py CONFIG [--work-dir DIR] [--amp]'
    assert classify(tokens(commands[0][1])) == ('make', ['test'], None)
    assert classify(tokens(commands[1][1])) == ('python', 'tools/train.py',
                                                ['--amp', '--work-dir'])
    assert classify(tokens(commands[2][1])) == ('python', 'tools/test.py', ['--tta'])
    assert classify(tokens('tools/dist_train.sh CONFIG 8')) == ('script', 'tools/dist_train.sh',
                                                                True)
    assert classify(['exported', 'x.onnx']) is None


def test_scripts_and_paths_in_commands_exist():
    problems = []
    for relpath, line, command, words, kind in all_commands():
        where = f'{relpath}:{line}: {command}'
        if kind[0] == 'python' and not (kind[1].endswith('.py') and
                                        os.path.isfile(os.path.join(ROOT, kind[1]))):
            problems.append(f'{where}: no script {kind[1]!r}')
        if kind[0] == 'script':
            path = os.path.join(ROOT, kind[1])
            if not os.path.isfile(path):
                problems.append(f'{where}: no script {kind[1]!r}')
            elif kind[2] and not os.access(path, os.X_OK):
                problems.append(f'{where}: {kind[1]} is not executable')
        for word in map(bare, words):
            value = word.split('=', 1)[1] if word.startswith('-') and '=' in word else word
            if (value.startswith(CHECKED_FOLDERS) and not any(m in value for m in PLACEHOLDER_MARKS)
                    and not os.path.exists(os.path.join(ROOT, value))):
                problems.append(f'{where}: {value} does not exist')
    assert not problems, '\n'.join(problems)


def test_make_targets_exist():
    if shutil.which('make') is None:
        pytest.skip('make is not installed')
    problems, seen = [], set()
    for relpath, line, command, _, kind in all_commands():
        if kind[0] != 'make' or tuple(kind[1]) in seen:
            continue
        seen.add(tuple(kind[1]))
        result = subprocess.run(['make', '-n', *kind[1]], cwd=ROOT, capture_output=True,
                                text=True, timeout=60)
        if result.returncode != 0:
            problems.append(f'{relpath}:{line}: {command}: {result.stderr.strip()}')
    assert not problems, '\n'.join(problems)


def github_anchor(heading):
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')


@functools.lru_cache(maxsize=None)
def anchors(relpath):
    found, counts = set(), {}
    for language, _, lines in split_fences(_read(relpath)):
        if language is not None:
            continue
        for line in lines:
            heading = re.match(r'^#{1,6}\s+(.*?)\s*#*\s*$', line)
            if heading:
                anchor = github_anchor(heading.group(1))
                number = counts.get(anchor, 0)
                counts[anchor] = number + 1
                found.add(anchor if number == 0 else f'{anchor}-{number}')
    return found


def markdown_links(text):
    """[(line number, target)] of the links and pictures in the prose (not in code)."""
    links = []
    for language, start, lines in split_fences(text):
        if language is not None:
            continue
        for number, line in enumerate(lines, start):
            prose = re.sub(r'`[^`]*`', '', line)
            for target in re.findall(r'\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)', prose):
                links.append((number, target))
    return links


def test_split_fences_and_anchors():
    assert github_anchor('2DVMamba: the 2D selective scan') == '2dvmamba-the-2d-selective-scan'
    assert github_anchor('With torch alone: `create_model`') == 'with-torch-alone-create_model'
    parts = split_fences('a\n```python\nx = [1](2)\n```\nb [c](d.md)\n')
    assert [(language, start) for language, start, _ in parts] == [(None, 1), ('python', 3),
                                                                   (None, 5)]
    assert markdown_links('a [b](c.md#d) `[e](f)`\n```\n[g](h)\n```\n') == [(1, 'c.md#d')]


def test_relative_links_resolve():
    problems = []
    for relpath in _markdown_files():
        for line, target in markdown_links(_read(relpath)):
            if re.match(r'^[a-z][a-z0-9+.-]*:', target):  # https:, mailto:, ...
                continue
            path, _, anchor = target.partition('#')
            linked = (relpath if not path else
                      os.path.normpath(os.path.join(os.path.dirname(relpath), path)))
            where = f'{relpath}:{line}: ({target})'
            if not os.path.exists(os.path.join(ROOT, linked)):
                problems.append(f'{where}: {linked} does not exist')
            elif anchor and linked.endswith('.md') and anchor not in anchors(linked):
                problems.append(f'{where}: {linked} has no heading #{anchor}')
    assert not problems, '\n'.join(problems)


@pytest.mark.slow
@pytest.mark.parametrize('script', sorted(python_scripts()))
def test_script_help_runs_and_lists_the_options_shown(script):
    path = os.path.join(ROOT, script)
    if not os.path.isfile(path):
        pytest.fail(f'{script} does not exist (named in the docs)')
    result = subprocess.run([sys.executable, path, '--help'], cwd=ROOT, capture_output=True,
                            text=True, timeout=HELP_TIMEOUT)
    assert result.returncode == 0, f'{script} --help exited {result.returncode}:\n{result.stderr}'
    unknown = {option: where for option, where in python_scripts()[script].items()
               if not re.search(re.escape(option) + r'(?![\w-])', result.stdout)}
    assert not unknown, f'{script} --help lists no {unknown}'
