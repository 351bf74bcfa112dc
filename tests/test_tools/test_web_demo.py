# Copyright (c) mmmaskclip contributors. All rights reserved.
"""``tools/demo/web_demo.py``: the request function, the page in a headless
Chromium, and the command line."""
import json
import os
import os.path as osp
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from conftest import load_script
from tiny_maskclip import tiny_inference_config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(REPO, 'tools', 'demo', 'web_demo.py')
SCENE = osp.join(REPO, 'demo', 'scene.png')
CHROMIUM, CHROMEDRIVER = '/usr/bin/chromium', '/usr/bin/chromedriver'
OFFLINE_ENV = dict(
    GRADIO_ANALYTICS_ENABLED='False',
    HF_HUB_OFFLINE='1',
    NO_PROXY='127.0.0.1,localhost',
    no_proxy='127.0.0.1,localhost')


def require(ok: bool, reason: str) -> None:
    """Skip when ``ok`` is false, or fail where ``MMMASKCLIP_REQUIRE_BROWSER=1`` (CI)."""
    if not ok:
        if os.environ.get('MMMASKCLIP_REQUIRE_BROWSER') == '1':
            pytest.fail(f'{reason} (MMMASKCLIP_REQUIRE_BROWSER=1)')
        pytest.skip(reason)


def import_or_require(name: str):
    try:
        return __import__(name)
    except ImportError:
        require(False, f'{name} is not installed (pip install -r requirements/demo.txt)')


@pytest.fixture(scope='module')
def web_demo():
    import_or_require('gradio')
    return load_script('tools/demo/web_demo.py')


@pytest.fixture(scope='module')
def tiny_config(tmp_path_factory):
    """A tiny MaskCLIP without the void class or thresholds, so that a random
    model's proposals count."""
    return tiny_inference_config(tmp_path_factory.mktemp('web_demo'), permissive=True)[0]


@pytest.fixture(scope='module')
def inferencer(tiny_config):
    from mmmaskclip.apis import MaskCLIPInferencer
    return MaskCLIPInferencer(tiny_config, device='cpu', show_progress=False)


@pytest.mark.parametrize('task', ['panoptic', 'semantic', 'instance'])
def test_segment_draws_lists_and_exports(web_demo, inferencer, task, tmp_path):
    """One request: the drawing at the image's size, rows named by the
    vocabulary, and the JSON of ``export_prediction`` of the prediction."""
    from PIL import Image

    from mmmaskclip.apis import export_prediction
    things, stuff = ['house', 'tree'], ['sky', 'grass']
    drawing, rows, json_path = web_demo.segment(inferencer, SCENE, 'house . tree', 'sky\ngrass\n',
                                                'none', task, 0.0, 0.0)
    height, width = np.asarray(Image.open(SCENE)).shape[:2]
    assert drawing.shape == (height, width, 3) and drawing.dtype == np.uint8
    assert rows and len(rows[0]) == len(web_demo.HEADERS)
    for _, name, kind, area, score in rows:
        assert name in (things if kind == 'thing' else stuff) and area > 0
        assert (score is not None) == (task == 'instance')
    # the same prediction again (the model is deterministic), exported here
    sample = inferencer(
        SCENE, texts=things, stuff_texts=stuff, return_datasamples=True)['predictions'][0]
    drawn = inferencer.visualize([SCENE], [sample],
                                 tasks=[task],
                                 return_vis=True,
                                 pred_score_thr=0.0)[0]
    if task != 'instance':  # mmdet jitters instance colours at random
        np.testing.assert_array_equal(drawing, drawn)  # the chosen task alone
    expected = export_prediction(sample, things + stuff, str(tmp_path), 'scene')
    assert osp.basename(json_path) == 'scene.json'
    with open(json_path) as f:
        assert json.load(f) == json.loads(json.dumps(expected))
    assert set(expected) == {'classes', 'image', 'instances', 'panoptic', 'semantic'}


def test_segment_refuses_bad_requests(web_demo, inferencer):
    import gradio as gr
    for args, match in [(('', '', 'none'), 'vocabulary is empty'),
                        (('rabbit', '', 'no-such-preset'), 'Unknown preset'),
                        (('rabbit . . cat', '', 'none'), 'empty class name')]:
        with pytest.raises(gr.Error, match=match):
            web_demo.segment(inferencer, SCENE, *args, 'panoptic', 0.3, 0.5)
    with pytest.raises(gr.Error, match='Upload an image'):
        web_demo.segment(inferencer, None, 'rabbit', '', 'none', 'panoptic', 0.3, 0.5)


def test_parse_names(web_demo):
    assert web_demo.parse_names('house . tree .\n\n sofa, couch \nSt. Bernard') == [
        'house', 'tree', 'sofa, couch', 'St. Bernard'
    ]
    assert web_demo.parse_names(None) == []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def wait_for_server(url: str, server: subprocess.Popen, log_path, timeout: float = 120) -> None:
    """Poll ``url`` (no proxy) until it answers; fail with the server's log."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.poll() is not None:
            pytest.fail(f'the demo exited ({server.returncode}):\n{log_path.read_text()}')
        try:
            with opener.open(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f'the demo did not answer at {url} in {timeout} s:\n{log_path.read_text()}')


@pytest.mark.slow
def test_page_in_headless_chromium(tiny_config, tmp_path):
    """Serve the demo (its command line, random weights), upload the scene in
    Chromium, name classes, submit: the drawing and the table appear."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not osp.exists(p)]
    require(not missing, f'the browser test needs {" and ".join(missing)}')
    import_or_require('gradio')
    import_or_require('selenium')
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    url = f'http://127.0.0.1:{port}/'
    log_path = tmp_path / 'server.log'
    command = [sys.executable, SCRIPT, '--config', tiny_config, '--device', 'cpu']
    command += ['--random-weights', '--port', str(port)]
    env = dict(os.environ, **OFFLINE_ENV)
    driver = None
    with open(log_path, 'w') as log:
        server = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_server(url, server, log_path)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage',
                     '--no-proxy-server', '--window-size=1400,1200'):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        driver.get(url)
        wait = WebDriverWait(driver, 60)
        upload = wait.until(
            EC.presence_of_element_located((By.CSS_SELECTOR, '#input-image input[type=file]')))
        upload.send_keys(SCENE)
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '#input-image img')))
        driver.find_element(By.CSS_SELECTOR, '#things textarea').send_keys('house . tree')
        driver.find_element(By.CSS_SELECTOR, '#stuff textarea').send_keys('sky\ngrass')
        driver.find_element(By.CSS_SELECTOR, '#submit').click()
        names = ('house', 'tree', 'sky', 'grass')

        def drawn(drv):  # found again on each try: the page re-renders
            return [
                img.get_attribute('src')
                for img in drv.find_elements(By.CSS_SELECTOR, '#result-image img')
                if img.get_attribute('src')
            ]

        def listed(drv):
            text = drv.find_element(By.CSS_SELECTOR, '#segments-table').text
            return [n for n in names if n in text.split()]

        assert wait.until(drawn)[0].strip()
        assert wait.until(listed)
        screenshot = tmp_path / 'web_demo.png'
        assert driver.save_screenshot(str(screenshot))
        assert screenshot.is_file() and screenshot.stat().st_size > 0
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_help_is_fast():
    start = time.time()
    out = subprocess.run([sys.executable, SCRIPT, '--help'],
                         cwd=REPO,
                         capture_output=True,
                         text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith('usage:') and '--random-weights' in out.stdout
    assert time.time() - start < 5
