"""The dashboard in a real browser (issue 7): Debian's chromium and chromium-driver, driven by selenium, headless.

The daemon runs with a slow LLM (10 tokens/s), so a run's tokens stream for half a minute. Through the page
only: enter the key, start a streaming run with the form, wait for tokens, pause and resume, press "Stop
generating"; then the page and `GET …/run/status/{id}` both say `terminated`, and no token appears afterwards.
Chatbots (issue 12 item 7), on a manual clock: a conversation's live turn streams into the page and its Stop
generating keeps the partial answer; a conversation opened mid-answer, and a failed turn. Sessions (issue 13
item 5): a session turn shows live, marked as such, and its Stop terminates the session and closes the socket.
Screenshots of the run list and the run detail (live, then stopped) go to Tests/sdk/screenshots/ (ignored by git;
or $MOCKSHIFT_SCREENSHOTS). The README shows copies of them committed in docs/screenshots/:
`MOCKSHIFT_SCREENSHOTS=docs/screenshots scripts/test` refreshes those.

Without chromium or chromedriver the test is skipped, except in CI (`CI` set), where it fails: `.ci/run`
installs them.
"""
import json
import os
import pathlib
import shutil
import time

import pytest
import requests

from conftest import REPO, build_llm_pipeline, build_streaming_pipeline, point_sdk, under_ci, unique

SHOTS = pathlib.Path(os.environ.get("MOCKSHIFT_SCREENSHOTS", REPO / "Tests" / "sdk" / "screenshots"))
ESSAY = "Write a 300 word essay about robots."


# Line boxes of an element's text (a Range's client rects, one per line and inline box; distinct tops = lines).
LINES = """const range = document.createRange(); range.selectNodeContents(arguments[0]);
return new Set([...range.getClientRects()].filter((r) => r.width > 0).map((r) => Math.round(r.top))).size;"""
# The first text of an element (a pipeline's name, before its id).
FIRST_TEXT_LINES = """const node = [...arguments[0].childNodes].find((n) => n.nodeType === 3 && n.textContent.trim());
const range = document.createRange(); range.selectNodeContents(node);
return new Set([...range.getClientRects()].filter((r) => r.width > 0).map((r) => Math.round(r.top))).size;"""


def assert_tables_do_not_wrap_words(driver, where, name_lines=1):
    """Issue 11 item 11: `overflow-wrap: anywhere` let the pipeline table's `Run…` button and names wrap a letter
    at a time. Each button's text stays on one line, and each (short) name on `name_lines` (2 in a narrow window:
    `nightly-summary` may break at its hyphen)."""
    from selenium.webdriver.common.by import By
    buttons = driver.find_elements(By.CSS_SELECTOR, "#pipelines-table tbody button, #runs-table tbody th button")
    assert buttons, "no buttons in the tables"
    for button in buttons:
        assert driver.execute_script(LINES, button) == 1, f"{where}: {button.text!r} wraps over several lines"
    for name in driver.find_elements(By.CSS_SELECTOR, "#pipelines-table tbody th"):
        lines = driver.execute_script(FIRST_TEXT_LINES, name)
        assert lines <= name_lines, f"{where}: the name in {name.text!r} wraps over {lines} lines"
    for cell in driver.find_elements(By.CSS_SELECTOR, "#runs-table tbody td"):
        most = 2 if cell.get_attribute("data-cell") == "pipeline" else 1  # a name may break once, at its hyphen
        assert driver.execute_script(LINES, cell) <= most, f"{where}: run list cell {cell.text!r} wraps"


def missing(what):
    message = f"{what} (Debian: apt-get install chromium chromium-driver; pip install selenium)"
    if under_ci():
        pytest.fail(f"CI must run the browser test, but {message}")
    pytest.skip(message)


def find_browser():
    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    driver = shutil.which("chromedriver") or next(
        (p for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver") if os.path.exists(p)), None)
    if not browser:
        missing("chromium is not installed")
    if not driver:
        missing("chromedriver is not installed")
    return browser, driver


@pytest.fixture
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing("selenium is not installed")
    binary, driver_path = find_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,800", "--hide-scrollbars", "--force-device-scale-factor=1",
                     "--disable-extensions", "--no-first-run", "--lang=en-US"):
        options.add_argument(argument)
    # The driver given by path: selenium's manager would otherwise look for one on the network.
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def test_start_a_streaming_run_in_the_page_and_stop_generating(new_daemon, browser):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    d = new_daemon("--tokens-per-second", "10", "--ttft-ms", "600")
    key = unique("browser")
    Pipeline = point_sdk(d, key)
    chat = build_streaming_pipeline(Pipeline, "support-chat")
    # Some history for the run list: a finished run, and one stopped through the API.
    summary = build_llm_pipeline(Pipeline, "nightly-summary")
    summary.start(inputs={"input_0": "Write 4 words."})
    stopped = summary.start(inputs={"input_0": ESSAY})
    summary.terminate(run_id=stopped.task_id)

    driver = browser
    # 1280×800 of page (the window's own frame, if any, comes on top).
    inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    driver.set_window_size(1280 + 1280 - inner[0], 800 + 800 - inner[1])
    wait = WebDriverWait(driver, 20, poll_frequency=0.05)
    css = lambda selector: driver.find_element(By.CSS_SELECTOR, selector)  # noqa: E731

    driver.get(d.root + "/")
    css("#api-key").send_keys(key)
    css("#key-save").click()
    wait.until(lambda _: css("#feed-state").get_attribute("data-state") == "live")
    wait.until(lambda _: len(driver.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr")) == 2)
    wait.until(lambda _: driver.find_elements(By.CSS_SELECTOR, f'#pipelines-table tr[data-pipeline-id="{chat.id}"]'))

    # Start a streaming run through the form.
    Select(css("#start-pipeline")).select_by_value(chat.id)
    question = wait.until(lambda _: driver.find_elements(By.CSS_SELECTOR, 'textarea[data-input="input_0"]'))[0]
    question.clear()
    question.send_keys(ESSAY)
    css("#mode-stream").click()
    css("#start-run").click()

    # The detail opens on the new run; tokens appear.
    wait.until(lambda _: css("#detail").is_displayed() and css("#detail-id").text)
    run_id = css("#detail-id").text
    output = 'pre.output-text[data-output="output_0"]'
    wait.until(lambda _: len(css(output).text.split()) >= 20)
    assert css("#detail-status").get_attribute("data-status") == "in_progress"
    assert "in progress" in css("#detail-status").text
    assert css("#detail-stop").is_enabled() and css("#detail-pause").is_enabled() and not css("#detail-resume").is_enabled()
    row = f'#runs-table tr[data-run-id="{run_id}"]'
    tokens_cell = lambda: css(row + " td[data-tokens]").text  # noqa: E731  ("—" until the first token)
    wait.until(lambda _: css(row).get_attribute("data-status") == "in_progress" and tokens_cell().isdigit()
               and int(tokens_cell()) >= 8)
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / "dashboard-live-run.png"))
    css("#runs").screenshot(str(SHOTS / "run-list.png"))
    css("#detail").screenshot(str(SHOTS / "run-detail-live.png"))
    assert_tables_do_not_wrap_words(driver, "1280 px")

    # The output box follows new tokens while it shows its end, and stays put once the user scrolled up.
    # (Made short here so that it overflows after a few tokens instead of a hundred.)
    box = css(output)
    driver.execute_script("arguments[0].style.maxHeight = '3.5rem'", box)
    gap = lambda: driver.execute_script(  # noqa: E731  pixels below the visible part
        "const b = arguments[0]; return b.scrollHeight - b.scrollTop - b.clientHeight", box)
    length = lambda: len(box.text)  # noqa: E731
    driver.execute_script("arguments[0].scrollTop = arguments[0].scrollHeight", box)
    before = length()
    wait.until(lambda _: length() > before + 150 and gap() <= 8, "the box to follow new tokens")  # 2+ lines more
    assert driver.execute_script("return arguments[0].scrollTop", box) > 0
    driver.execute_script("arguments[0].scrollTop = 0", box)
    before = length()
    wait.until(lambda _: length() > before + 40, "more tokens")
    assert driver.execute_script("return arguments[0].scrollTop", box) == 0, "the box moved under a reader who scrolled up"
    driver.execute_script("arguments[0].scrollTop = arguments[0].scrollHeight", box)
    before = length()
    wait.until(lambda _: length() > before + 150 and gap() <= 8, "the box to follow again once back at the end")
    driver.execute_script("arguments[0].style.maxHeight = ''", box)

    # Pause and resume: the buttons follow the status.
    css("#detail-pause").click()
    wait.until(lambda _: css("#detail-status").get_attribute("data-status") == "paused")
    assert "paused" in css("#detail-status").text
    wait.until(lambda _: css("#detail-resume").is_enabled() and not css("#detail-pause").is_enabled())
    css("#detail-resume").click()
    wait.until(lambda _: css("#detail-status").get_attribute("data-status") == "in_progress" and css("#detail-pause").is_enabled())
    before = len(css(output).text)
    wait.until(lambda _: len(css(output).text) > before, "tokens go on after resume")

    # Stop generating, from the keyboard: after the run's heading come Close, then Stop generating.
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    driver.execute_script("document.getElementById('detail-title').focus()")
    ActionChains(driver).send_keys(Keys.TAB, Keys.TAB).perform()
    assert driver.switch_to.active_element.get_attribute("id") == "detail-stop", "Stop generating is reachable by Tab"
    ActionChains(driver).send_keys(Keys.ENTER).perform()
    wait.until(lambda _: css("#detail-status").get_attribute("data-status") == "terminated")
    assert "terminated" in css("#detail-status").text, "the status is written, not only coloured"
    status = requests.get(f"{d.url}/pipeline/{chat.id}/run/status/{run_id}",
                          headers={"Authorization": f"Bearer {key}"}, timeout=10).json()
    assert status["status"] == "terminated"
    wait.until(lambda _: not css("#detail-stop").is_enabled() and not css("#detail-pause").is_enabled()
               and not css("#detail-resume").is_enabled())
    wait.until(lambda _: css(row).get_attribute("data-status") == "terminated")
    stopped_text = css(output).text
    assert stopped_text and stopped_text == status["partial_outputs"]["output_0"].strip()
    # No token afterwards: at 10 tokens/s, 1.5 s would bring about 15 more.
    try:
        WebDriverWait(driver, 1.5, poll_frequency=0.05).until(lambda _: css(output).text != stopped_text)
        raise AssertionError(f"the output changed after Stop generating: {css(output).text[len(stopped_text):]!r}")
    except TimeoutException:
        pass
    assert requests.get(f"{d.url}/pipeline/{chat.id}/run/status/{run_id}", headers={"Authorization": f"Bearer {key}"},
                        timeout=10).json()["output_tokens"] == status["output_tokens"]
    wait.until(lambda _: len(driver.find_elements(By.CSS_SELECTOR, "#detail-timeline tbody tr")) >= 6
               and "terminated" in css("#detail-timeline").text)
    # The clock column counts from the run's creation (it showed the daemon's uptime).
    first = driver.find_elements(By.CSS_SELECTOR, "#detail-timeline tbody tr")[0].find_elements(By.TAG_NAME, "td")
    assert first[2].text == "created" and abs(float(first[1].text)) < 0.05, [c.text for c in first]
    clocks = [float(r.find_elements(By.TAG_NAME, "td")[1].text or 0)
              for r in driver.find_elements(By.CSS_SELECTOR, "#detail-timeline tbody tr")]
    assert clocks == sorted(clocks) and clocks[-1] < 120_000, f"milliseconds since the run began: {clocks}"
    css("#detail").screenshot(str(SHOTS / "run-detail-stopped.png"))
    driver.save_screenshot(str(SHOTS / "dashboard-stopped-run.png"))

    # The run list's filters.
    rows = lambda: driver.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr")  # noqa: E731
    Select(css("#filter-status")).select_by_value("terminated")
    wait.until(lambda _: len(rows()) == 2 and all(r.get_attribute("data-status") == "terminated" for r in rows()))
    Select(css("#filter-status")).select_by_value("")
    Select(css("#filter-pipeline")).select_by_value(summary.id)
    wait.until(lambda _: len(rows()) == 2 and run_id not in [r.get_attribute("data-run-id") for r in rows()])
    Select(css("#filter-pipeline")).select_by_value("")
    wait.until(lambda _: len(rows()) == 3)

    # A background run from the form: it shows up, and completes.
    Select(css("#start-pipeline")).select_by_value(summary.id)
    question = wait.until(lambda _: driver.find_elements(By.CSS_SELECTOR, 'textarea[data-input="input_0"]'))[0]
    question.clear()
    question.send_keys("Write 3 words.")
    css("#mode-background").click()
    css("#start-run").click()
    wait.until(lambda _: css("#detail-id").text not in ("", run_id))
    background = css("#detail-id").text
    wait.until(lambda _: css("#detail-status").get_attribute("data-status") == "completed")
    assert css("#detail-mode").text == "background"
    assert css(f'#runs-table tr[data-run-id="{background}"]').get_attribute("data-status") == "completed"

    # Narrow window: one column, nothing wider than the window, the controls still there.
    driver.set_window_size(420, 900)
    wait.until(lambda _: driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1"))
    assert css("#detail-stop").is_displayed()
    driver.save_screenshot(str(SHOTS / "dashboard-narrow.png"))
    assert_tables_do_not_wrap_words(driver, "420 px", name_lines=2)


def test_the_page_reconnects_by_itself_after_a_daemon_restart(tmp_path, browser):
    import socket

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from conftest import Daemon

    with socket.socket() as s:  # a port for both lives of the daemon (the page stays on one origin)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = tmp_path / "restart.sqlite3"
    first = Daemon(db, "--port", str(port)).start()
    try:
        Pipeline = point_sdk(first, "restart-key")
        pipeline = build_llm_pipeline(Pipeline, "before-restart")
        done = pipeline.start(inputs={"input_0": "Write 3 words."})
        driver = browser
        wait = WebDriverWait(driver, 20, poll_frequency=0.05)
        state = lambda: driver.find_element(By.ID, "feed-state").get_attribute("data-state")  # noqa: E731
        driver.get(first.root + "/")
        driver.find_element(By.ID, "api-key").send_keys("restart-key")
        driver.find_element(By.ID, "key-save").click()
        wait.until(lambda _: state() == "live")
        wait.until(lambda _: driver.find_elements(By.CSS_SELECTOR, f'#runs-table tr[data-run-id="{done.task_id}"]'))
    finally:
        assert first.stop() == 0
    wait.until(lambda _: state() == "down", "the page notices the daemon is gone")
    assert "reconnect" in driver.find_element(By.ID, "feed-state").text or "retrying" in driver.find_element(By.ID, "feed-state").text
    second = Daemon(db, "--port", str(port)).start()
    try:
        wait.until(lambda _: state() == "live", "the page reconnects by itself")
        Pipeline = point_sdk(second, "restart-key")
        after = Pipeline.fetch(id=pipeline.id).start(inputs={"input_0": "Write 3 words."})
        row = f'#runs-table tr[data-run-id="{after.task_id}"]'
        wait.until(lambda _: driver.find_elements(By.CSS_SELECTOR, row)
                   and driver.find_element(By.CSS_SELECTOR, row).get_attribute("data-status") == "completed",
                   "a run started after the restart shows up live")
    finally:
        second.stop()


def test_long_names_and_a_key_switch_do_not_break_the_page(new_daemon, browser):
    """Found by a newcomer: a 3,000-character pipeline name widened the page to 26,000 px, and answers for the
    old key arriving after a key switch showed the old namespace's pipelines under the new key."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    d = new_daemon()
    key_a, key_b = unique("long-a"), unique("long-b")
    long_name = "x" * 3000
    build_llm_pipeline(point_sdk(d, key_a), long_name).start(inputs={"input_0": "Write 4 words."})
    build_llm_pipeline(point_sdk(d, key_b), "b-only")
    # Key A's pipeline list answers late (3 s), so it arrives after the switch to key B.
    assert requests.post(f"{d.root}/_mock/faults", headers={"Authorization": f"Bearer {key_a}"},
                         json={"path": "/v1/pipelines", "delay_ms": 3000, "times": 1}, timeout=10).status_code == 200

    driver = browser
    driver.set_window_size(1280, 800)
    wait = WebDriverWait(driver, 20, poll_frequency=0.05)
    css = lambda selector: driver.find_element(By.CSS_SELECTOR, selector)  # noqa: E731
    driver.get(d.root + "/")
    css("#api-key").clear()
    css("#api-key").send_keys(key_a)
    css("#key-save").click()
    css("#api-key").clear()
    css("#api-key").send_keys(key_b)
    css("#key-save").click()
    wait.until(lambda _: "b-only" in css("#pipelines-table").text)

    def late_answer_sent():
        journal = requests.get(f"{d.root}/_mock/requests", headers={"Authorization": f"Bearer {key_a}"}, timeout=10).json()
        return any(e["path"] == "/v1/pipelines" and e["duration_ms"] >= 2900 for e in journal["requests"])

    WebDriverWait(driver, 10, poll_frequency=0.1).until(lambda _: late_answer_sent())
    # The late answer has reached the browser within a second of being sent; it must have been dropped.
    until = time.monotonic() + 1.0
    while time.monotonic() < until:
        assert long_name[:50] not in css("#pipelines-table").text, "key A's pipelines shown under key B"
        time.sleep(0.05)

    # Key A's page with the long name stays within the window.
    css("#api-key").clear()
    css("#api-key").send_keys(key_a)
    css("#key-save").click()
    wait.until(lambda _: long_name[:50] in css("#pipelines-table").text)
    wait.until(lambda _: driver.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr"))
    width = driver.execute_script("return document.documentElement.scrollWidth")
    inner = driver.execute_script("return window.innerWidth")
    assert width <= inner + 2, f"page is {width} px wide in a {inner} px window"


def manual_clock_chatbot(new_daemon, name):
    """A daemon on a manual clock with a slow LLM (first token at 500 ms, then 10 a second), a key of its own, a
    streaming pipeline `NAME-chat` and its chatbot `NAME-bot`. Returns the daemon, the key, the pipeline, the chatbot
    and `advance(ms)`, which moves the clock and returns once all that fell due has happened."""
    from vectorshift.chatbot import Chatbot

    d = new_daemon("--clock", "manual", "--tokens-per-second", "10", "--ttft-ms", "500")
    key = unique(f"browser-{name}")
    pipeline = build_streaming_pipeline(point_sdk(d, key), f"{name}-chat")
    bot = Chatbot.new(name=f"{name}-bot", description="", pipeline_id=pipeline.id)

    def advance(ms):
        answer = requests.post(f"{d.root}/_mock/clock/advance", headers={"Authorization": f"Bearer {key}"},
                               json={"ms": ms}, timeout=30)
        assert answer.status_code == 200, answer.text

    return d, key, pipeline, bot, advance


def test_a_conversation_streams_its_live_turn_and_stop_generating_keeps_the_partial_answer(new_daemon, browser):
    """Issue 12 item 7. A manual clock: tokens come only when the test moves it, so "no token after the stop"
    is shown by moving it on and seeing nothing change. Through the SDK: a chatbot, a streamed turn (read as the
    SDK hands lines over) and later a plain turn; through the page: the chatbot list, the conversation list, the
    conversation with its live turn, Stop generating."""
    import queue
    import threading

    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    d, key, pipeline, bot, advance = manual_clock_chatbot(new_daemon, "support")
    headers = {"Authorization": f"Bearer {key}"}

    def stored(cid):
        return requests.get(f"{d.root}/_mock/conversations/{cid}", headers=headers, timeout=10).json()["conversation"]

    driver = browser
    inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    driver.set_window_size(1280 + 1280 - inner[0], 800 + 800 - inner[1])
    wait = WebDriverWait(driver, 20, poll_frequency=0.05)
    css = lambda selector: driver.find_element(By.CSS_SELECTOR, selector)  # noqa: E731
    text_of = lambda selector: css(selector).get_attribute("textContent")  # noqa: E731  (exact, spaces kept)

    driver.get(d.root + "/")
    css("#api-key").send_keys(key)
    css("#key-save").click()
    wait.until(lambda _: css("#feed-state").get_attribute("data-state") == "live")
    bot_row = f'#chatbots-table tr[data-chatbot-id="{bot.id}"]'
    wait.until(lambda _: driver.find_elements(By.CSS_SELECTOR, bot_row)
               and text_of(bot_row + ' td[data-cell="pipeline"]') == "support-chat")
    assert "support-bot" in css(bot_row + " th").text and text_of(bot_row + ' td[data-cell="conversations"]') == "0"

    # A streamed turn over the SDK, on a thread: its first event names the run and the conversation.
    received = queue.Queue()

    def read_turn():
        for line in bot.run(ESSAY, stream=True):
            if line.startswith(b"data: "):
                received.put(json.loads(line[len(b"data: "):]))

    threading.Thread(target=read_turn, daemon=True).start()
    start = received.get(timeout=10)
    assert start["type"] == "start", start
    run_id, cid = start["run_id"], start["conversation_id"]

    # The chatbot list counts the new conversation by itself; its conversations, then the conversation, open.
    wait.until(lambda _: text_of(bot_row + ' td[data-cell="conversations"]') == "1")
    css(bot_row + " th button").click()
    conversation_row = f'#conversations-table tr[data-conversation-id="{cid}"]'
    wait.until(lambda _: driver.find_elements(By.CSS_SELECTOR, conversation_row)
               and css(conversation_row).get_attribute("data-state") == "generating")
    assert "support-bot" in css("#conversations-title").text
    css(conversation_row + " th button").click()
    wait.until(lambda _: css("#conversation").is_displayed() and css("#conversation-id").text == cid)
    assert not css("#detail").is_displayed(), "the run detail and the conversation share the column"
    turn = f'#conversation-turns li[data-run-id="{run_id}"]'
    answer = turn + ' p[data-role="answer"]'
    wait.until(lambda _: driver.find_elements(By.CSS_SELECTOR, turn)
               and css(turn).get_attribute("data-outcome") == "generating")
    wait.until(lambda _: text_of(turn + ' p[data-role="user"]') == ESSAY)
    assert text_of(answer) == "" and "generating" in css(turn + " .outcome").text
    stop = css("#conversation-stop")
    assert stop.tag_name == "button" and stop.text == "Stop generating"
    wait.until(lambda _: stop.is_enabled())

    # Tokens arrive as the clock moves: first token at 500 ms, then 10 a second.
    advance(1500)
    wait.until(lambda _: len(text_of(answer).split()) >= 8, "tokens in the conversation view")
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / "dashboard-chat-live.png"))
    css("#conversation").screenshot(str(SHOTS / "conversation-live.png"))
    css("#chatbots").screenshot(str(SHOTS / "chatbots.png"))
    before = text_of(answer)
    advance(1000)
    wait.until(lambda _: len(text_of(answer)) > len(before), "more tokens as the clock moves on")
    assert text_of(answer).startswith(before), "the answer grows at its end"
    seen = text_of(answer)

    # Stop generating: the turn shows its partial answer marked stopped.
    stop.click()
    wait.until(lambda _: css(turn).get_attribute("data-outcome") == "stopped")
    assert "stopped" in css(turn + " .outcome").text, "the outcome is written, not only coloured"
    assert "partial answer" in css(turn + " .turn-note").text
    wait.until(lambda _: not stop.is_enabled())
    shown = text_of(answer)
    assert shown.startswith(seen), (seen, shown)

    # Over the API: the run is terminated, the stream ended stopped, the stored turn holds the text the page shows.
    status = requests.get(f"{d.url}/pipeline/{pipeline.id}/run/status/{run_id}", headers=headers, timeout=10).json()
    assert status["status"] == "terminated", status
    result = received.get(timeout=10)
    while result["type"] != "result":
        result = received.get(timeout=10)
    assert result["status"] == "terminated" and result["output_message"] == shown, result
    turns = stored(cid)["turns"]
    assert [(t["run_id"], t["outcome"], t["answer"]) for t in turns] == [(run_id, "stopped", shown)]

    # No token afterwards, however far the clock moves (it would bring 30 more).
    advance(3000)
    try:
        WebDriverWait(driver, 1.5, poll_frequency=0.05).until(lambda _: text_of(answer) != shown)
        raise AssertionError(f"the answer changed after Stop generating: {text_of(answer)[len(shown):]!r}")
    except TimeoutException:
        pass
    assert requests.get(f"{d.url}/pipeline/{pipeline.id}/run/status/{run_id}", headers=headers,
                        timeout=10).json()["output_tokens"] == status["output_tokens"]
    assert css(conversation_row).get_attribute("data-state") == "stopped"
    css("#conversation").screenshot(str(SHOTS / "conversation-stopped.png"))

    # A plain turn in the same conversation: it appears by itself (the feed), then shows its whole answer.
    replies = queue.Queue()
    threading.Thread(target=lambda: replies.put(bot.run("Write 5 words.", conversation_id=cid)), daemon=True).start()
    items = "#conversation-turns li"
    wait.until(lambda _: len(driver.find_elements(By.CSS_SELECTOR, items)) == 2, "the new turn in the view")
    second = driver.find_elements(By.CSS_SELECTOR, items)[1]
    assert second.get_attribute("data-outcome") == "generating"
    wait.until(lambda _: second.find_element(By.CSS_SELECTOR, 'p[data-role="user"]').text == "Write 5 words.")
    deadline = time.monotonic() + 20
    while replies.empty():
        assert time.monotonic() < deadline, "the second turn did not end"
        advance(500)
    reply = replies.get()
    assert reply["status"] == "success", reply
    wait.until(lambda _: second.get_attribute("data-outcome") == "completed")
    wait.until(lambda _: second.find_element(By.CSS_SELECTOR, 'p[data-role="answer"]').get_attribute("textContent")
               == reply["output_message"])
    turns = stored(cid)["turns"]
    assert [t["outcome"] for t in turns] == ["stopped", "completed"] and turns[1]["answer"] == reply["output_message"]
    assert len(reply["output_message"].split()) >= 3
    wait.until(lambda _: css("#conversation-turn-count").text == "2")
    wait.until(lambda _: text_of(conversation_row + ' td[data-cell="turns"]') == "2"
               and css(conversation_row).get_attribute("data-state") == "completed")
    assert text_of(answer) == shown, "the stopped turn keeps its partial answer"
    assert not css("#conversation-stop").is_enabled()

    # The turn's run opens from the conversation, and links back to it.
    css(turn + " .who a").click()
    wait.until(lambda _: css("#detail").is_displayed() and css("#detail-id").text == run_id)
    assert not css("#conversation").is_displayed()
    assert css("#detail-chat-link").get_attribute("href").endswith("#conversation=" + cid)
    css("#detail-chat-link").click()
    wait.until(lambda _: css("#conversation").is_displayed() and driver.find_elements(By.CSS_SELECTOR, answer)
               and text_of(answer) == shown)

    # Narrow window: one column, nothing wider than the window.
    driver.set_window_size(420, 900)
    wait.until(lambda _: driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1"))
    assert css("#conversation-stop").is_displayed() and css(bot_row).is_displayed()
    driver.execute_script("document.getElementById('conversation').scrollIntoView()")
    driver.save_screenshot(str(SHOTS / "dashboard-chat-narrow.png"))


def test_a_conversation_opened_by_its_link_mid_answer_shows_a_failed_turn_and_the_rest_of_the_live_one(new_daemon, browser):
    """A conversation opened from a link (`#conversation=ID`) while a turn streams: the page says it joined
    mid-answer, shows the tokens from then on and the whole answer once the turn ends; an earlier turn failed by an
    injected LLM fault shows as failed with its error. Manual clock, as above."""
    import queue
    import threading

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    d, key, pipeline, bot, advance = manual_clock_chatbot(new_daemon, "join")
    headers = {"Authorization": f"Bearer {key}"}
    fault = requests.post(f"{d.root}/_mock/faults", headers=headers, timeout=10, json={
        "path": f"/v1/chatbot/{bot.id}/run", "llm_fail_after_tokens": 2, "message": "provider overloaded", "times": 1})
    assert fault.status_code == 200, fault.text

    def streamed_turn(text, **kw):
        events = queue.Queue()

        def read():
            for line in bot.run(text, stream=True, **kw):
                if line.startswith(b"data: "):
                    events.put(json.loads(line[len(b"data: "):]))

        threading.Thread(target=read, daemon=True).start()
        return events

    def until_result(events):
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, "the turn did not end"
            try:
                event = events.get(timeout=0.05)
            except queue.Empty:
                advance(2000)
                continue
            if event["type"] == "result":
                return event

    first = streamed_turn("Write 20 words.")
    start = first.get(timeout=10)
    cid, failed_run = start["conversation_id"], start["run_id"]
    failed = until_result(first)
    assert failed["status"] == "failed" and "provider overloaded" in failed["error"], failed

    driver = browser
    driver.set_window_size(1280, 800)
    wait = WebDriverWait(driver, 20, poll_frequency=0.05)
    css = lambda selector: driver.find_element(By.CSS_SELECTOR, selector)  # noqa: E731
    text_of = lambda selector: css(selector).get_attribute("textContent")  # noqa: E731
    driver.get(d.root + "/")
    css("#api-key").send_keys(key)
    css("#key-save").click()
    wait.until(lambda _: css("#feed-state").get_attribute("data-state") == "live")
    driver.get("about:blank")  # the page is gone while the next turn begins

    second = streamed_turn(ESSAY, conversation_id=cid)
    live_run = second.get(timeout=10)["run_id"]
    advance(1500)  # about 10 tokens the page never sees
    driver.get(f"{d.root}/#conversation={cid}")
    wait.until(lambda _: css("#conversation").is_displayed() and css("#conversation-id").text == cid)
    failed_turn, live_turn = (f'#conversation-turns li[data-run-id="{r}"]' for r in (failed_run, live_run))
    wait.until(lambda _: driver.find_elements(By.CSS_SELECTOR, live_turn)
               and css(live_turn).get_attribute("data-outcome") == "generating")
    assert css(failed_turn).get_attribute("data-outcome") == "failed" and "failed" in css(failed_turn + " .outcome").text
    assert "provider overloaded" in css(failed_turn + " .turn-note").text
    assert text_of(live_turn + ' p[data-role="user"]') == ESSAY
    assert "Joined mid-answer" in css(live_turn + " .turn-note").text
    assert text_of(live_turn + ' p[data-role="answer"]') == "", "tokens from before the page are not invented"
    assert css("#conversation-stop").is_enabled()

    advance(1000)
    wait.until(lambda _: len(text_of(live_turn + ' p[data-role="answer"]').split()) >= 5, "tokens after joining")
    joined_part = text_of(live_turn + ' p[data-role="answer"]')
    result = until_result(second)
    assert result["status"] == "success", result
    wait.until(lambda _: css(live_turn).get_attribute("data-outcome") == "completed")
    whole = text_of(live_turn + ' p[data-role="answer"]')
    stored = requests.get(f"{d.root}/_mock/conversations/{cid}", headers=headers, timeout=10).json()["conversation"]
    assert [t["outcome"] for t in stored["turns"]] == ["failed", "completed"]
    assert whole == stored["turns"][1]["answer"] == result["output_message"]
    assert joined_part in whole and not whole.startswith(joined_part), "the whole answer, not only what was seen"
    assert not css(live_turn + " .turn-note").is_displayed()
    assert not css("#conversation-stop").is_enabled()


def test_a_session_turn_shows_live_and_stop_terminates_the_session_and_closes_its_socket(new_daemon, browser):
    """Issue 13 item 5: a chatbot session over WebSocket (our raw client, `wsclient.py`) is a conversation; its live
    turn streams into the page, marked as a session turn. Stop calls `POST /_mock/sessions/{id}/terminate`: the
    turn is stored `Terminated` with exactly the text the client got (no frame after), the session is terminated,
    and the client's socket gets Close 1000. Manual clock: tokens come only when the test moves it."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from wsclient import CLOSE, TEXT, RawWebSocket

    d, key, pipeline, bot, advance = manual_clock_chatbot(new_daemon, "session")
    headers = {"Authorization": f"Bearer {key}"}
    driver = browser
    inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    driver.set_window_size(1280 + 1280 - inner[0], 800 + 800 - inner[1])
    wait = WebDriverWait(driver, 20, poll_frequency=0.05)
    css = lambda selector: driver.find_element(By.CSS_SELECTOR, selector)  # noqa: E731
    text_of = lambda selector: css(selector).get_attribute("textContent")  # noqa: E731
    driver.get(d.root + "/")
    css("#api-key").send_keys(key)
    css("#key-save").click()
    wait.until(lambda _: css("#feed-state").get_attribute("data-state") == "live")

    ws = RawWebSocket(d.root, key=key)
    assert ws.connect().status == 101
    ws.send_json({"type": "create_session", "object_type": "chatbot", "object_id": bot.id})
    sid = ws.recv_json()["session_id"]
    ws.send_json({"type": "post_message", "session_id": sid, "content": ESSAY})
    assert ws.recv_json()["success"] is True
    assert ws.recv_json()["message"]["status"] == "Processing"

    # The session's conversation (its id is the session's), opened by its link while the turn waits for its first
    # token: the feed announced the turn's run with its session_id, so the page marks it as a session turn.
    driver.execute_script("location.hash = arguments[0]", "conversation=" + sid)
    turn = "#conversation-turns li"
    wait.until(lambda _: driver.find_elements(By.CSS_SELECTOR, turn)
               and css(turn).get_attribute("data-outcome") == "generating")
    wait.until(lambda _: css(turn).get_attribute("data-session-id") == sid and css(turn + " .via").is_displayed())
    assert css(turn + " .via").text == "session"
    assert text_of(turn + ' p[data-role="user"]') == ESSAY
    wait.until(lambda _: css("#conversation-session").is_displayed() and css("#conversation-session-id").text == sid)
    stop = css("#conversation-stop")
    wait.until(lambda _: stop.is_enabled())
    assert stop.text == "Stop (terminate session)"

    # Tokens stream to the client and into the page.
    answer = turn + ' p[data-role="answer"]'
    advance(1500)  # first token at 500 ms, then 10 a second: 10 tokens
    got = []
    while len(got) < 10:
        frame = ws.recv_json()
        assert frame["type"] == "message_delta", frame
        got.append(frame["value"])
    wait.until(lambda _: text_of(answer) == "".join(got), "the client's deltas in the page")
    SHOTS.mkdir(parents=True, exist_ok=True)
    css("#conversation").screenshot(str(SHOTS / "conversation-session-live.png"))

    # Stop: the session is terminated, the turn stored Terminated with what the client saw, the socket closed.
    stop.click()
    wait.until(lambda _: css(turn).get_attribute("data-outcome") == "stopped")
    wait.until(lambda _: "(terminated)" in css("#conversation-session-id").text)
    code, reason = None, None
    while True:
        _, opcode, payload = ws.recv_frame()
        if opcode == CLOSE:
            code, reason = int.from_bytes(payload[:2], "big"), payload[2:].decode()
            break
        assert opcode == TEXT
        frame = json.loads(payload)
        assert frame["type"] == "message_delta", f"a frame of the stopped turn: {frame}"
        got.append(frame["value"])
    assert (code, reason) == (1000, "session terminated")
    ws.send(b"\x88\x82\x00\x00\x00\x00\x03\xe8")  # our Close answer (1000)
    assert ws.at_eof(), "the daemon closes the socket"
    wait.until(lambda _: text_of(answer) == "".join(got), "the page shows the stored partial answer")
    turns = requests.get(f"{d.root}/_mock/conversations/{sid}", headers=headers, timeout=10).json()["conversation"]["turns"]
    assert [(t["outcome"], t["answer"]) for t in turns] == [("stopped", "".join(got))]
    other = RawWebSocket(d.root, key=key)
    assert other.connect().status == 101
    other.send_json({"type": "get_messages", "session_id": sid})
    messages = other.recv_json()["messages"]
    assert [(m["content"]["status"], m["content"]["value"]) for m in messages] == [("Complete", ESSAY),
                                                                                  ("Terminated", "".join(got))]
    other.send_json({"type": "connect_session", "session_id": sid})
    assert other.recv_json()["error"] == f"session {sid} was terminated"
    assert other.close() == 1000

    # Nothing more, however far the clock moves.
    shown = text_of(answer)
    advance(3000)
    try:
        WebDriverWait(driver, 1.5, poll_frequency=0.05).until(lambda _: text_of(answer) != shown)
        raise AssertionError(f"the answer changed after the stop: {text_of(answer)!r}")
    except TimeoutException:
        pass
    assert not stop.is_enabled()
    css("#conversation").screenshot(str(SHOTS / "conversation-session-stopped.png"))
