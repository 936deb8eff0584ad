"""A simulated participant: answers an experiment's own response components while it runs.

A dry run plays the participant of an unmodified Builder experiment. While a
simulated run is in progress, the response components' input entry points
are wrapped (on their classes, restored when the run ends):

- ``psychopy.hardware.keyboard.Keyboard.getKeys`` (Builder keyboard
  components): a key press goes into the keyboard device's own response
  queue (``KeyboardDevice.receiveMessage``, the queue the real backends fill);
- ``psychopy.event.getKeys`` (code components, hand-written scripts): the key
  goes into ``event._keyBuffer``, where pyglet's key handler puts real keys;
- ``psychopy.event.Mouse.getPressed`` (mouse components): the pointer is moved
  onto a clickable stimulus and the press goes through
  ``event._onPygletMousePress``/``_onPygletMouseRelease``, pyglet's handlers;
- sliders (``visual.Slider``) found among the running routine's objects at a
  ``thisExp.status`` read (see :mod:`session.control`): the rating goes
  through ``Slider.recordRating``, which the slider's mouse handler calls;
  forms' items are rated and typed into the same way;
- buttons (``visual.ButtonStim``) and draggable stimuli found there too: the
  pointer goes to a point the stimulus ``contains`` (:mod:`session.pointer`)
  and pyglet's press handler runs, so the button's own ``isClicked`` and
  ``Window.flip``'s ``doDragging`` see a press, as they would a real one;
- ioHub eye tracking (:mod:`session.eyetracking`): SPACE on the calibration
  screens ioHub's server shows, and gaze on regions of interest (``visual.ROI``),
  as XTest events ioHub's own X recorder reads (:mod:`session.xinput`).

Everything happens on the experiment's thread, inside calls the experiment
makes anyway between two flips; nothing runs on another thread or in the
middle of a frame. The response is chosen from what the component accepts
(its key list, its clickable stimuli, the slider's ticks) and, when the
.psyexp gives the component a correct answer, is correct with probability
``p_correct``. Its time follows the policy's distribution and is measured
from the component's own clock reset (its onset), so the RT the experiment
records is the drawn RT, to within the moment the component reads input.

Each response "episode" (one component, one activation) draws from its own
random stream derived from (seed, component name, episode number), so a
seed reproduces every response even if frame timing differs between runs.
Every decision is appended to ``simulated_responses.jsonl`` in the run
folder, stamped on the session clock.
"""

from __future__ import annotations

import json
import math
import sys
import xml.etree.ElementTree as ET
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from . import eyetracking, pointer
from .pointer import point_at

RESPONSES_FILE = "simulated_responses.jsonl"
MARKER_FILE = "SIMULATED"
RT_DISTRIBUTIONS = ("lognormal", "fixed")
DEFAULT_KEY = "space"
NEVER_PRESSED = frozenset({"escape"})  # quits Builder experiments: a participant would not press it
SCAN_INTERVAL = 0.05  # s: how often the routine's locals are searched for sliders
EPISODE_GAP = 0.25  # s: an event.getKeys call site quiet this long starts a new episode
STALE_PRESS = 2.0  # s: a press its listener never polls again (routine ended otherwise) is released after this
OWN_FILES = {__file__, str(Path(__file__).with_name("control.py"))}


class PolicyError(ValueError):
    """A simulation policy with an impossible value; ``code`` maps it onto the protocol."""

    code = "invalid_args"


@dataclass(frozen=True)
class Policy:
    """How the simulated participant answers.

    ``p_correct`` applies where the component has a correct answer; ``p_miss``
    is the chance of not answering at all; RTs are log-normal with the given
    mean and sd (seconds), or ``fixed`` at ``rt_mean``; a key is held
    ``hold`` seconds. ``seed`` None takes the run's seed.
    """

    seed: int | None = None
    p_correct: float = 0.8
    p_miss: float = 0.0
    rt: str = "lognormal"
    rt_mean: float = 0.45
    rt_sd: float = 0.1
    hold: float = 0.08

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> "Policy":
        """Build and check a policy; unknown names and out-of-range values raise PolicyError."""
        values = dict(values or {})
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise PolicyError(f"unknown simulation setting(s): {', '.join(sorted(unknown))}")
        policy = cls(**values)
        for name in ("p_correct", "p_miss"):
            value = getattr(policy, name)
            if not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise PolicyError(f"simulation {name} must be a probability in [0, 1], not {value!r}")
        if policy.rt not in RT_DISTRIBUTIONS:
            raise PolicyError(f"simulation rt must be one of {', '.join(RT_DISTRIBUTIONS)}, not {policy.rt!r}")
        for name, low in (("rt_mean", 0.0), ("rt_sd", 0.0), ("hold", 0.0)):
            value = getattr(policy, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < low \
                    or (name == "rt_mean" and value == 0):
                raise PolicyError(f"simulation {name} must be a positive number of seconds, not {value!r}")
        if policy.seed is not None and (not isinstance(policy.seed, int) or policy.seed < 0):
            raise PolicyError(f"simulation seed must be a non-negative integer, not {policy.seed!r}")
        return policy

    def with_seed(self, seed: int) -> "Policy":
        """This policy, seeded with ``seed`` unless it names its own seed (a run's seed reproduces its dry run)."""
        return self if self.seed is not None else Policy(**{**asdict(self), "seed": seed})

    def describe(self) -> dict[str, Any]:
        """The policy's settings as a dict, as the manifest and the run record keep them."""
        return asdict(self)


@dataclass
class Decision:
    """What the participant does in one episode: a response (or a miss) at ``rt``."""

    respond: bool
    rt: float
    correct: bool | None
    choice_index: float  # uniform draw in [0, 1) that picks the response among the candidates


def draw(policy: Policy, component: str, episode: int) -> Decision:
    """The decision for ``component``'s ``episode``-th activation (its own random stream)."""
    import numpy

    rng = numpy.random.default_rng([policy.seed or 0, zlib.crc32(component.encode()), episode])
    miss, correct_draw, rt_draw, choice = rng.random(4)
    if policy.rt == "fixed" or policy.rt_sd == 0:
        rt = float(policy.rt_mean)
    else:  # log-normal with this mean and sd: sigma^2 = ln(1 + sd^2/mean^2), mu = ln(mean) - sigma^2/2
        sigma2 = math.log(1 + (policy.rt_sd / policy.rt_mean) ** 2)
        rt = float(math.exp(math.log(policy.rt_mean) - sigma2 / 2 + math.sqrt(sigma2) * _normal(rt_draw)))
    return Decision(respond=bool(miss >= policy.p_miss), rt=rt, correct=bool(correct_draw < policy.p_correct),
                    choice_index=float(choice))


def _normal(u: float) -> float:
    """Standard normal quantile of ``u`` (inverse CDF), so one uniform draw gives one RT."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(min(max(u, 1e-12), 1 - 1e-12))


# --- what the experiment file says about its components -------------------------------------

def component_params(experiment_path: Path | None) -> dict[str, dict[str, str]]:
    """Component name -> its Builder params (``correctAns``, ``clickable``...), read from a .psyexp.

    A hand-written script has no such file: its components are known only
    by what they ask for at run time (key lists), with no correct answer.
    """
    if experiment_path is None or Path(experiment_path).suffix != ".psyexp":
        return {}
    try:
        tree = ET.parse(experiment_path)
    except (ET.ParseError, OSError):
        return {}
    params: dict[str, dict[str, str]] = {}
    for routine in tree.getroot().iter("Routine"):
        for comp in routine:
            values = {p.get("name"): p.get("val", "") for p in comp.iter("Param")}
            name = values.get("name")
            if name:
                params[name] = {**values, "_type": comp.tag}
    return params


def _expression(value: str | None) -> str | None:
    text = (value or "").strip()
    if text.startswith("$"):
        text = text[1:].strip()
    return text or None


def _evaluate(text: str, frame) -> Any:
    """A Builder param as the experiment would see it: an expression in its namespace, else text."""
    try:
        return eval(text, frame.f_globals, frame.f_locals)  # noqa: S307 - the experiment's own param, its own namespace
    except Exception:  # noqa: BLE001 - a literal such as left, or a name not set yet
        return text


def _caller_frame():
    """The experiment's frame that called into us (skipping this module and session.control)."""
    frame = sys._getframe(2)
    while frame is not None and (frame.f_code.co_filename in OWN_FILES
                                 or frame.f_globals.get("__name__", "").startswith("psychopy.")):
        frame = frame.f_back
    return frame


def _name_in(frame, obj) -> str | None:
    if frame is None:
        return None
    for name, value in frame.f_locals.items():
        if value is obj:
            return name
    for name, value in frame.f_globals.items():
        if value is obj:
            return name
    return None


# --- episodes ---------------------------------------------------------------------------------

@dataclass
class Episode:
    """One activation of one component: what was drawn and whether it was delivered."""

    component: str
    index: int
    decision: Decision
    first_seen: float  # psychopy clock time when the episode began
    token: Any = None  # identifies the activation (e.g. the component's fresh ``keys`` list)
    calls: int = 0  # times the component asked for input in this episode
    delivered: bool = False
    released: bool = False
    response: Any = None
    flip: Any = None  # the window's last flip time when the episode began (see _flipped_since)
    onset: float | None = None  # psychopy clock time of the first call after the onset flip (button boxes)


def _flipped_since(episode: Episode, win) -> bool:
    """Has the window flipped since ``episode`` began? Then its onset flip (which resets clocks) is past.

    ``thisExp.status`` is read more than once a frame, so counting calls
    does not tell frames apart; the window's own flip timestamp does.
    """
    stamp = getattr(win, "_frameTime", None)
    if episode.flip is None:
        episode.flip = ("at", stamp)
        return False
    return episode.flip != ("at", stamp)


@dataclass
class Press:
    """A simulated mouse press still held (pyglet's press handler has run, its release handler not yet).

    ``listener`` is the Mouse the click is for (a mouse component, a button's
    own listener). The press is released once that Mouse has polled it and
    ``hold`` has passed: other Mice polling meanwhile (a form's sliders read
    the buttons while they draw) do not count, or a slow frame could release
    the press before the button's ``isClicked`` ever reads it.
    """

    x: int
    y: int
    when: float
    listener: Any
    seen: bool = False
    drag: bool = False  # held by a drag, which releases it itself


@dataclass
class Drag:
    """A drag in progress: pressed on ``stim``, then the pointer moves to ``to`` (pixels), then it lets go.

    Each step waits for a flip, because PsychoPy drags in ``Window.flip``:
    ``doDragging`` takes the stimulus while the button is pressed on it and
    moves it by the pointer's travel since the last flip (``Mouse.getRel``).
    """

    episode: Episode
    stim: Any
    to: Any
    flip: Any
    moved: bool = False


class Simulator:
    """The simulated participant of one run; :meth:`install` before it, :meth:`uninstall` after."""

    def __init__(self, policy: Policy, run_dir: Path, experiment_path: Path | None,
                 session_time: Callable[[], float]) -> None:
        self.policy = policy
        self.run_dir = Path(run_dir)
        self.session_time = session_time
        self.params = component_params(experiment_path)
        self.episodes: dict[Any, Episode] = {}  # keyed by component object id / call site
        self.counts: dict[str, int] = {}
        self.responses = 0
        self._log = None
        self._patches: list[tuple[Any, str, Any]] = []
        self._sliders: list[tuple[str, Any]] = []
        self._button_down: Press | None = None  # a simulated press still held
        self._buttons: list[tuple[str, Any]] = []
        self._texts: list[tuple[str, Any, Any]] = []  # free-text items of forms
        self._answered_at = 0.0  # psychopy clock time of the last rating, typed text or drag
        self._draggables: list[tuple[str, Any]] = []
        self._boards: list[Any] = []  # shown stimuli that are not draggable: where drags may drop
        self._drag: Drag | None = None
        self._next_scan = 0.0
        self._names: dict[int, str] = {}  # id of a component object -> its name in the experiment
        self._rois: list[tuple[str, Any]] = []  # regions of interest to look at (eye tracking)
        self.eyetracking = eyetracking.Eyetracking(self)

    # lifecycle -------------------------------------------------------------------------
    def install(self) -> None:
        """Wrap the input entry points (main thread, before the experiment's ``run``)."""
        from psychopy import event
        from psychopy.hardware import keyboard
        from psychopy.visual.button import ButtonStim
        from psychopy.visual.form import Form
        from psychopy.visual.slider import Slider  # not psychopy.visual.Slider: a lazy-import proxy

        self._log = open(self.run_dir / RESPONSES_FILE, "a", encoding="utf-8")
        sim = self

        original_kb = keyboard.Keyboard.getKeys

        def kb_get_keys(this, keyList=None, ignoreKeys=None, waitRelease=True, clear=True):
            sim._keyboard(this, keyList, ignoreKeys, waitRelease)
            return original_kb(this, keyList=keyList, ignoreKeys=ignoreKeys, waitRelease=waitRelease, clear=clear)

        original_event = event.getKeys

        def event_get_keys(keyList=None, modifiers=False, timeStamped=False):
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if caller == "psychopy.event" or not caller.startswith("psychopy."):  # not PsychoPy polling itself
                sim._event_keys(keyList)
            return original_event(keyList=keyList, modifiers=modifiers, timeStamped=timeStamped)

        original_pressed = event.Mouse.getPressed

        def get_pressed(this, getTime=False):
            sim._mouse(this)
            pressed = original_pressed(this, getTime=getTime)
            if sim._button_down is not None and sim._button_down.listener is this:
                sim._button_down.seen = True  # the component the click is for has read it
            return pressed

        from psychopy.hardware import button as button_box

        original_box = button_box.ButtonBox.getResponses

        def box_get_responses(this, state=None, channel=None, clear=True):
            sim._button_box(this, channel)
            return original_box(this, state=state, channel=channel, clear=clear)

        self._patch(keyboard.Keyboard, "getKeys", kb_get_keys)
        self._patch(button_box.ButtonBox, "getResponses", box_get_responses)
        self._patch(event, "getKeys", event_get_keys)
        self._patch(event.Mouse, "getPressed", get_pressed)
        self._slider_class, self._button_class, self._form_class = Slider, ButtonStim, Form
        from psychopy.visual.basevisual import DraggingMixin
        from psychopy.visual.grating import GratingStim
        from psychopy.visual.image import ImageStim
        from psychopy.visual.shape import BaseShapeStim

        self._draggable_class, self._board_classes = DraggingMixin, (ImageStim, BaseShapeStim, GratingStim)
        from psychopy.visual.roi import ROI

        self._roi_class = ROI
        # ioHub's client is imported lazily, by launchHubServer in setupDevices, i.e. after this: importing
        # it here (about 10 ms, before the run) lets the calibration's RPC be wrapped whatever comes later
        eyetracking.wrap_setup_procedure(self.eyetracking, self._patch)

    def _patch(self, owner, name: str, replacement) -> None:
        self._patches.append((owner, name, owner.__dict__[name]))
        setattr(owner, name, replacement)

    def uninstall(self) -> None:
        """Put the originals back and close the log (always, also after a failed run)."""
        while self._patches:
            owner, name, original = self._patches.pop()
            setattr(owner, name, original)
        if self._button_down is not None:  # leave no button held for the next run
            self._release_button()
        self._drag = None
        self.eyetracking.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    # the status-read hook ---------------------------------------------------------------
    def at_frame(self) -> None:
        """Between frames (a ``thisExp.status`` read): answer sliders, forms and buttons whose time has come."""
        from psychopy import clock
        from psychopy.constants import STARTED

        now = clock.getTime()
        if now >= self._next_scan:
            self._next_scan = now + SCAN_INTERVAL
            frame = _caller_frame()
            if frame is not None:
                self._scan(frame.f_locals)
        if self._release_due(now):
            self._release_button()
        for name, slider, form in self._sliders:
            if form is None:
                self._slider(name, slider, now)
            elif getattr(form, "status", None) == STARTED:  # a form's items: drawn or scrolled out of view
                self._slider(name, slider, now, require_started=False)
        for name, box, form in self._texts:
            if getattr(form, "status", None) == STARTED and not box.text:
                episode = self._episode(id(box), name, form, now)
                if not episode.delivered and now - episode.first_seen >= episode.decision.rt:
                    box.text = "simulated"  # typed text, as its key handler would leave it
                    self._answered_at = now
                    self._record(episode, "text", "simulated", episode.decision.rt, None)
        if self._drag is not None:
            self._drag_step(now)
        for name, stim in self._draggables:
            self._draggable(name, stim, now)
        for name, button in self._buttons:
            self._button(name, button, now)
        for name, roi in self._rois:
            self.eyetracking.look(name, roi, now)

    def _ratings_pending(self) -> bool:
        """Does a shown slider, form item or draggable stimulus still wait for its answer (or its drawn miss)?"""
        from psychopy.constants import STARTED

        for _name, slider, form in self._sliders:
            shown = getattr(form if form is not None else slider, "status", None) == STARTED
            if shown and slider.rating is None:
                episode = self.episodes.get(id(slider))
                if episode is None or episode.token is not slider.history or not episode.delivered:
                    return True
        for _name, box, form in self._texts:
            if getattr(form, "status", None) == STARTED and not box.text:
                episode = self.episodes.get(id(box))
                if episode is None or not episode.delivered:
                    return True
        for _name, stim in self._draggables:
            if getattr(stim, "status", None) == STARTED:
                episode = self.episodes.get(id(stim))
                if episode is None or episode.token is not stim.tStart or not episode.delivered:
                    return True
        return self._drag is not None

    def _scan(self, namespace: dict[str, Any]) -> None:
        """The routine's response objects: sliders (also inside forms), buttons, draggable stimuli, ROIs."""
        sliders, buttons, texts, draggables, boards, rois = [], [], [], [], [], []
        seen: set[int] = set()
        # Builder's own names first: "thisComponent" (its loop over components) is an alias
        for name, value in sorted(namespace.items(), key=lambda item: item[0].startswith("this")):
            if id(value) in seen:
                continue
            seen.add(id(value))
            if isinstance(value, self._slider_class):
                sliders.append((name, value, None))
            elif isinstance(value, self._form_class):
                for index, item in enumerate(getattr(value, "items", None) or []):
                    control = item.get("responseCtrl") if isinstance(item, dict) else None
                    if isinstance(control, self._slider_class):
                        sliders.append((f"{name}.{index}", control, value))
                    elif control is not None and getattr(control, "editable", False) and hasattr(control, "text"):
                        texts.append((f"{name}.{index}", control, value))
            elif isinstance(value, self._button_class):
                buttons.append((name, value))
            elif isinstance(value, self._roi_class):  # a ShapeStim, but looked at, not a board
                rois.append((name, value))
            elif isinstance(value, self._draggable_class) and getattr(value, "win", None) is not None:
                if getattr(value, "draggable", False):
                    draggables.append((name, value))
                elif isinstance(value, self._board_classes):
                    boards.append(value)
        self._sliders, self._buttons, self._texts = sliders, buttons, texts
        self._draggables, self._boards, self._rois = draggables, boards, rois

    def _component_name(self, frame, component, default: str) -> str:
        """The experiment's variable name for ``component`` (looked up once per object)."""
        key = id(component)
        name = self._names.get(key)
        if name is None:
            name = self._names[key] = _name_in(frame, component) or default
        return name

    # episodes --------------------------------------------------------------------------------
    def _episode(self, key: Any, component: str, token: Any, now: float) -> Episode:
        episode = self.episodes.get(key)
        if episode is None or episode.token is not token:
            index = self.counts.get(component, 0)
            self.counts[component] = index + 1
            episode = Episode(component, index, draw(self.policy, component, index), now, token)
            self.episodes[key] = episode
        return episode

    def _record(self, episode: Episode, kind: str, response: Any, rt: float | None, correct_answer: Any) -> None:
        episode.delivered = True
        self.responses += response is not None
        entry = {
            "session_time": round(self.session_time(), 6), "component": episode.component,
            "episode": episode.index, "kind": kind, "response": response, "rt": rt,
            "correct_answer": correct_answer,
            "correct": None if correct_answer is None else _same(response, correct_answer),
        }
        if self._log is not None:
            self._log.write(json.dumps(entry, default=str) + "\n")
            self._log.flush()

    def _correct_answer(self, name: str | None, frame) -> Any:
        params = self.params.get(name or "")
        if not params:
            return None
        if params.get("storeCorrect", "True") in ("False", "false", False):
            return None
        text = _expression(params.get("correctAns"))
        if text is None:
            return None
        return _evaluate(text, frame)

    # keyboards -----------------------------------------------------------------------------
    def _keyboard(self, component, key_list, ignore_keys, wait_release: bool) -> None:
        """A Builder keyboard component asks for keys: press one when its RT has come."""
        if getattr(component, "status", None) is not None:
            from psychopy.constants import STARTED

            if component.status != STARTED:
                return
        from psychopy import clock

        now = clock.getTime()
        token = component.keys if isinstance(getattr(component, "keys", None), list) else None
        frame = _caller_frame()
        name = self._component_name(frame, component, "keyboard")
        episode = self._episode(id(component), name, token, now)
        if episode.delivered:
            self._release(episode, now)
            return
        episode.calls += 1
        if episode.calls < 2:  # the onset flip may still be about to reset the component's clock
            return
        onset = component.clock.getLastResetTime()
        decision = episode.decision
        correct_answer = self._correct_answer(name, frame)
        answer = _choose_key(key_list, ignore_keys, correct_answer, decision)
        if answer is None:  # a miss, or a correct non-response
            self._record(episode, "key", None, None, correct_answer)
            return
        due = decision.rt + (self.policy.hold if wait_release else 0.0)
        if now - onset < due:
            return
        from psychopy import logging
        from psychopy.hardware.keyboard import KeyPress

        press = KeyPress(code=answer, tDown=onset + decision.rt - logging.defaultClock.getLastResetTime(),
                         name=answer)
        press.name, press.value, press.code = answer, answer, answer
        press.rt = decision.rt
        press.duration = self.policy.hold if wait_release else None
        device = component.device
        if getattr(device, "muteOutsidePsychopy", False):  # the queue, not the focus check, is the path
            device.responses.append(press)
        else:
            device.receiveMessage(press)
        episode.response = press
        self._record(episode, "key", answer, decision.rt, correct_answer)

    def _release(self, episode: Episode, now: float) -> None:
        press = episode.response
        if press is not None and not episode.released and press.duration is None:
            press.duration = self.policy.hold
            episode.released = True

    # button boxes ---------------------------------------------------------------------------
    def _button_box(self, component, channels) -> None:
        """A Builder button box component asks for presses: press one of its buttons when its RT has come.

        The press and, ``hold`` later, the release go to the device's own
        ``receiveMessage`` as ``ButtonResponse``s, the messages its
        ``dispatchMessages`` makes of a real button's; their ``t`` is on the
        component's clock (the device's timer is reset at the component's onset).
        """
        from psychopy.constants import STARTED

        device = getattr(component, "device", None)
        responses = getattr(component, "responses", None)
        if getattr(component, "status", None) != STARTED or device is None or not isinstance(responses, list):
            return
        from psychopy import clock

        now = clock.getTime()
        frame = _caller_frame()
        name = self._component_name(frame, component, "buttonBox")
        episode = self._episode(id(component), name, responses, now)  # Builder makes the list anew each onset
        if episode.delivered:
            self._release_box(episode, device, now)
            return
        if not _flipped_since(episode, eyetracking.open_window()):
            return  # the onset flip (which resets the device's timer) may still be to come
        if episode.onset is None:
            episode.onset = now
        decision = episode.decision
        if channels is not None and not isinstance(channels, (list, tuple)):
            channels = [channels]
        allowed = [str(c) for c in (channels or range(int(getattr(device, "channels", 1) or 1)))]
        correct_answer = self._correct_answer(name, frame)
        answer = _choose_key(allowed, None, correct_answer, decision)
        if answer is None:
            self._record(episode, "button_box", None, None, correct_answer)
            return
        if now - episode.onset < decision.rt:
            return
        from psychopy.hardware.button import ButtonResponse

        channel = int(answer)
        device.receiveMessage(ButtonResponse(t=decision.rt, value=True, channel=channel))
        episode.response = channel
        self._record(episode, "button_box", channel, decision.rt, correct_answer)

    def _release_box(self, episode: Episode, device, now: float) -> None:
        if episode.response is None or episode.released or now - episode.onset < episode.decision.rt + self.policy.hold:
            return
        from psychopy.hardware.button import ButtonResponse

        device.receiveMessage(ButtonResponse(t=episode.decision.rt + self.policy.hold, value=False,
                                             channel=episode.response))
        episode.released = True

    def _event_keys(self, key_list) -> None:
        """``event.getKeys`` from a code component or script: a key into pyglet's buffer."""
        from psychopy import clock, event

        frame = sys._getframe(2)
        site = (frame.f_code.co_filename, frame.f_lineno)
        now = clock.getTime()
        episode = self.episodes.get(site)
        last = getattr(episode, "_last_call", None) if episode is not None else None
        if episode is None or episode.delivered or (last is not None and now - last > EPISODE_GAP):
            name = f"{Path(site[0]).stem}:{site[1]}"
            index = self.counts.get(name, 0)
            self.counts[name] = index + 1
            episode = Episode(name, index, draw(self.policy, name, index), now)
            self.episodes[site] = episode
        episode._last_call = now  # type: ignore[attr-defined]
        answer = _choose_key(key_list, None, None, episode.decision)
        if answer is None:
            if not episode.delivered:
                self._record(episode, "event_key", None, None, None)
            return
        if now - episode.first_seen < episode.decision.rt:
            return
        event._keyBuffer.append((answer, {}, episode.first_seen + episode.decision.rt))
        self._record(episode, "event_key", answer, episode.decision.rt, None)

    # mice ---------------------------------------------------------------------------------------
    def _mouse(self, mouse) -> None:
        """A mouse component polls its buttons: click a clickable stimulus when the RT has come."""
        from psychopy import clock
        from psychopy.constants import STARTED

        now = clock.getTime()
        if self._release_due(now):
            self._release_button()  # held for `hold`, and a poll has seen it
        status = getattr(mouse, "status", None)
        if status is not None and status != STARTED:
            return
        token = mouse.x if isinstance(getattr(mouse, "x", None), list) else None
        frame = _caller_frame()
        name = self._component_name(frame, mouse, "mouse")
        if token is None and name == "mouse" and status is None:
            return  # a bare Mouse the experiment reads for its own reasons, not a response component
        episode = self._episode(id(mouse), name, token, now)
        if episode.delivered:
            return
        decision = episode.decision
        targets = self._clickables(name, frame)
        correct_names = self._mouse_correct(name, frame)
        if not decision.respond:
            self._record(episode, "click", None, None, correct_names)
            return
        if now - episode.first_seen < decision.rt or self._button_down is not None:
            return  # not yet, or the last click is still held
        target = _choose_target(targets, correct_names, decision)
        if target is not None:
            point_at(target, mouse)
        episode.response = self._press(mouse, now)
        self._record(episode, "click", getattr(target, "name", None), decision.rt, correct_names)

    def _press(self, listener, now: float) -> tuple[int, int]:
        """Press the left button where the pointer is (pyglet's own handler), held for ``listener``."""
        from psychopy import event

        handle = getattr(listener.win, "winHandle", None)
        x, y = getattr(handle, "_mouse_x", 0), getattr(handle, "_mouse_y", 0)
        event._onPygletMousePress(x, y, event.LEFT, 0)
        self._button_down = Press(x, y, now, listener)
        return x, y

    def _release_due(self, now: float) -> bool:
        down = self._button_down
        if down is None:
            return False
        held = now - down.when
        return (down.seen and not down.drag and held >= self.policy.hold) or held >= self.policy.hold + STALE_PRESS

    def _release_button(self) -> None:
        from psychopy import event

        down, self._button_down = self._button_down, None
        event._onPygletMouseRelease(down.x, down.y, event.LEFT, 0)

    def _clickables(self, name: str, frame) -> list:
        text = self.params.get(name, {}).get("clickable", "")
        names = [part.strip().strip("'\"") for part in _expression(text).strip("[]()").split(",")] if text else []
        found = []
        for stim_name in names:
            if not stim_name:
                continue
            obj = frame.f_locals.get(stim_name, frame.f_globals.get(stim_name)) if frame is not None else None
            if obj is not None and hasattr(obj, "contains"):
                found.append(obj)
        return found

    def _mouse_correct(self, name: str, frame) -> Any:
        params = self.params.get(name)
        if not params or "correctAns" not in params:
            return None
        text = _expression(params.get("correctAns"))
        return _evaluate(text, frame) if text else None

    # sliders --------------------------------------------------------------------------------------
    def _button(self, name: str, button, now: float) -> None:
        """A Builder button: click on it (pointer moved there, pyglet's press handler) at its RT.

        A button is taken for the routine's "Done": it is clicked only once the
        routine's shown sliders and form items are answered, ``rt`` after the
        later of its onset and the last answer.

        The click reaches the experiment the way a real one does: ``isClicked``
        asks the button's own ``listener`` Mouse ``isPressedIn(button)``, i.e.
        pressed (pyglet's handler set it) and ``button.contains(pointer)``.
        """
        from psychopy.constants import STARTED

        if getattr(button, "status", None) != STARTED or self._button_down is not None:
            return
        episode = self._episode(id(button), name, getattr(button, "timesOn", None), now)
        if episode.delivered:
            return
        mouse = getattr(button, "listener", None)
        if mouse is None or not hasattr(mouse, "setPos"):
            return
        if not _flipped_since(episode, mouse.win):  # its buttonClock is reset at the onset flip
            return
        if not episode.decision.respond:
            self._record(episode, "button", None, None, None)
            return
        if self._ratings_pending():  # "Done" comes after the ratings: a participant fills them in first
            return
        clock = getattr(button, "buttonClock", None)
        onset = clock.getLastResetTime() if clock is not None else episode.first_seen
        if now - max(onset, self._answered_at) < episode.decision.rt:  # from its onset or the last answer
            return
        point_at(button, mouse)
        self._press(mouse, now)
        self._record(episode, "button", name, episode.decision.rt, None)

    def _draggable(self, name: str, stim, now: float) -> None:
        """A draggable stimulus: at its RT, press on it and drag it to a point of the routine's board.

        The drop point is uniform over the largest shown stimulus that is not
        draggable (the board a drag-and-drop task draws; the window's middle
        if there is none); drags are made one after another, each ``rt``
        after the later of the stimulus's onset and the previous answer.
        """
        from psychopy.constants import STARTED

        if getattr(stim, "status", None) != STARTED or self._drag is not None or self._button_down is not None:
            return
        episode = self._episode(id(stim), name, stim.tStart, now)  # tStart: a new value at each onset
        if episode.delivered or not _flipped_since(episode, stim.win):
            return
        decision = episode.decision
        if not decision.respond:
            self._record(episode, "drag", None, None, None)
            return
        if now - max(episode.first_seen, self._answered_at) < decision.rt:
            return
        mouse = stim.mouse  # the Mouse its doDragging asks (the draggable setter made it)
        if mouse is None or not point_at(stim, mouse):
            self._record(episode, "drag", None, None, None)  # nowhere on it to take hold of
            return
        boards = [b for b in self._boards if getattr(b, "status", None) == STARTED]
        area = pointer.drop_area(boards, stim.win)
        where = pointer.drop_point(area, decision.choice_index, draw(self.policy, name + "/drop", episode.index)
                                   .choice_index)
        # the stimulus moves with the pointer, so the pointer goes to where its pos should end up plus the grip
        to = where + (pointer.pointer_pix(mouse) - pointer.centre_pix(stim))
        self._press(mouse, now)
        self._button_down.drag = True
        self._drag = Drag(episode, stim, to, getattr(stim.win, "_frameTime", None))

    def _drag_step(self, now: float) -> None:
        """Move the held pointer once the press has been taken, let go once the move has been applied."""
        drag = self._drag
        stamp = getattr(drag.stim.win, "_frameTime", None)
        if stamp == drag.flip:
            return  # doDragging runs in the next flip
        drag.flip = stamp
        if not drag.moved and getattr(drag.stim, "isDragging", False):
            pointer.move_to(drag.stim.mouse, drag.to)
            drag.moved = True
            return
        self._release_button()
        self._drag = None
        self._answered_at = now
        pos = [round(float(v), 6) for v in drag.stim.pos] if drag.moved else None  # None: another held it
        self._record(drag.episode, "drag", pos, drag.episode.decision.rt if drag.moved else None, None)

    def _slider(self, name: str, slider, now: float, require_started: bool = True) -> None:
        from psychopy.constants import STARTED

        if slider.rating is not None or (require_started and getattr(slider, "status", None) != STARTED):
            return
        episode = self._episode(id(slider), name, slider.history, now)
        if episode.delivered:
            return
        decision = episode.decision
        if not decision.respond:
            self._record(episode, "rating", None, None, None)
            return
        if not _flipped_since(episode, slider.win):  # its first draw may reset its clock at the next flip
            return
        # a form's item is timed from the form's onset (its clock runs from when the form built it)
        elapsed = slider.responseClock.getTime() if require_started else now - episode.first_seen
        if elapsed < decision.rt:
            return
        ticks = [float(t) for t in (getattr(slider, "ticks", None) if getattr(slider, "ticks", None) is not None
                                    else [0, 1])]
        if getattr(slider, "categorical", False):
            value = ticks[min(int(decision.choice_index * len(ticks)), len(ticks) - 1)]
        else:  # anywhere on the scale; the slider snaps it to its granularity
            value = ticks[0] + decision.choice_index * (ticks[-1] - ticks[0])
        slider.recordRating(value, rt=decision.rt)
        self._answered_at = now
        rating = slider.getRating()
        self._record(episode, "rating", _plain(rating), decision.rt, None)


# --- choices ----------------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    try:
        import numpy

        if isinstance(value, numpy.generic):
            return value.item()
    except ImportError:
        pass
    return value


def _same(response: Any, answer: Any) -> bool:
    if isinstance(answer, (list, tuple)):
        return any(_same(response, a) for a in answer)
    return str(response) == str(answer)


def _choose_key(key_list, ignore_keys, correct_answer, decision: Decision) -> str | None:
    """The key pressed in this episode, or None for no press."""
    if not key_list:
        allowed = [DEFAULT_KEY]
    else:
        allowed = [str(k) for k in key_list if k not in (ignore_keys or []) and k not in NEVER_PRESSED]
        if not allowed:  # the experiment listens for escape only: nothing for a participant to press
            return None
    no_response_is_correct = correct_answer is not None and str(correct_answer).lower() == "none"
    if no_response_is_correct:  # go/no-go: withholding is the correct answer
        if decision.correct or not decision.respond:
            return None
        return allowed[min(int(decision.choice_index * len(allowed)), len(allowed) - 1)]
    if not decision.respond:
        return None
    if correct_answer is not None and str(correct_answer) in allowed:
        wrong = [k for k in allowed if k != str(correct_answer)]
        if decision.correct or not wrong:
            return str(correct_answer)
        return wrong[min(int(decision.choice_index * len(wrong)), len(wrong) - 1)]
    return allowed[min(int(decision.choice_index * len(allowed)), len(allowed) - 1)]


def _choose_target(targets: list, correct_names: Any, decision: Decision):
    if not targets:
        return None
    if correct_names is not None:
        wanted = {str(c) for c in (correct_names if isinstance(correct_names, (list, tuple)) else [correct_names])}
        right = [t for t in targets if getattr(t, "name", None) in wanted]
        wrong = [t for t in targets if t not in right]
        if right and (decision.correct or not wrong):
            return right[min(int(decision.choice_index * len(right)), len(right) - 1)]
        if wrong:
            return wrong[min(int(decision.choice_index * len(wrong)), len(wrong) - 1)]
    return targets[min(int(decision.choice_index * len(targets)), len(targets) - 1)]


def write_marker(run_dir: Path, policy: Policy) -> None:
    """``SIMULATED`` in the run folder: no one can take this folder for a participant's data."""
    from .records import write_atomic

    write_atomic(Path(run_dir) / MARKER_FILE,
                 "This run was played by Liaison's simulated participant; it is not a participant's data.\n"
                 + json.dumps(policy.describe(), sort_keys=True) + "\n")


class _FrameHook:
    """Two status-read hooks in one; pickles as a no-op (Builder pickles its ExperimentHandler)."""

    __slots__ = ("first", "second")

    def __init__(self, first: Callable[[], None] | None, second: Callable[[], None]) -> None:
        self.first, self.second = first, second

    def __call__(self) -> None:
        if self.first is not None:
            self.first()
        self.second()

    def __reduce__(self):
        return (_no_hook, ())


def _no_hook() -> None:
    return None


class SimulatedRun:
    """The simulated participant's part in one run: policy, marker, pilot flag, wrapped inputs."""

    def __init__(self, policy: Policy, run_dir: Path, experiment_path: Path | None,
                 session_time: Callable[[], float]) -> None:
        self.policy = policy
        self.simulator = Simulator(policy, run_dir, experiment_path, session_time)
        self.run_dir = Path(run_dir)
        self._piloting: list[tuple[Any, Any]] = []

    def manifest(self) -> dict[str, Any]:
        """What the run's manifest says about it: simulated, and how."""
        return {"simulated": True, "simulation": {"policy": self.policy.describe(),
                                                  "responses_file": RESPONSES_FILE}}

    def start(self, module) -> None:
        """Before ``setupData``: PsychoPy's pilot flag on (its data get ``piloting=True``), inputs wrapped."""
        from psychopy import piloting

        write_marker(self.run_dir, self.policy)
        for owner in (module, piloting):
            if hasattr(owner, "PILOTING"):
                self._piloting.append((owner, owner.PILOTING))
                owner.PILOTING = True
        self.simulator.install()

    def frame_hook(self, other: Callable[[], None] | None) -> Callable[[], None]:
        """A status-read hook doing ``other`` (the GC guard's) and then the simulator's."""
        return _FrameHook(other, self.simulator.at_frame)

    def stop(self) -> None:
        """After the run, whatever its end: originals back, pilot flag as it was."""
        self.simulator.uninstall()
        while self._piloting:
            owner, value = self._piloting.pop()
            owner.PILOTING = value
