"""Builds the Builder experiments keys_task and mouse_slider in tests/experiments with PsychoPy's own API.

Run: PYTHONPATH=$PWD .venv/bin/python tests/experiments/make_builder_fixtures.py tests/experiments
"""
import sys
from pathlib import Path
from psychopy import experiment
from psychopy.experiment.routines import Routine
from psychopy.experiment.loops import TrialHandler
from psychopy.experiment.components.keyboard import KeyboardComponent
from psychopy.experiment.components.text import TextComponent
from psychopy.experiment.components.code import CodeComponent
from psychopy.experiment.components.mouse import MouseComponent
from psychopy.experiment.components.slider import SliderComponent
from psychopy.experiment.components.polygon import PolygonComponent

out = Path(sys.argv[1])

def new_exp(name):
    e = experiment.Experiment()
    e.settings.params['expName'].val = name
    e.settings.params['Show info dlg'].val = False
    e.settings.params['Full-screen window'].val = False
    e.settings.params['Window size (pixels)'].val = '[320, 240]'
    return e

def text(e, rname, name, txt, dur=''):
    t = TextComponent(e, rname, name=name, text=txt, font='DejaVu Sans', units='height', letterHeight=0.05)
    t.params['stopVal'].val = dur
    return t

def add_routine(e, name, comps):
    r = Routine(name, e)
    for c in comps:
        r.addComponent(c)
    e.addRoutine(name, r)
    return r

# --- keys_task: instructions (event.getKeys in a code component), 40 keyboard trials with correctAns
e = new_exp('keys_task')
intro = add_routine(e, 'intro', [text(e, 'intro', 'introText', 'press space')])
code = CodeComponent(e, 'intro', name='waitSpace')
code.params['Each Frame'].val = "if event.getKeys(keyList=['space']):\n    continueRoutine = False\n"
intro.addComponent(code)
stim = text(e, 'trial', 'stim', '$word')
stim.params['text'].updates = 'set every repeat'
trial = add_routine(e, 'trial', [stim])
kb = KeyboardComponent(e, 'trial', name='resp', allowedKeys="'left','right'", store='last key',
                       forceEndRoutine=True, storeCorrect=True, correctAns='$corrAns')
kb.params['stopVal'].val = ''
trial.addComponent(kb)
loop = TrialHandler(e, name='trials', nReps=20, conditionsFile='conditions.csv', loopType='random')
e.flow.addRoutine(intro, 0)
e.flow.addLoop(loop, 1, 2)
e.flow.addRoutine(trial, 2)
(out / 'keys_task').mkdir(exist_ok=True)
(out / 'keys_task' / 'conditions.csv').write_text('word,corrAns\nLEFT,left\nRIGHT,right\n')
e.saveToXML(str(out / 'keys_task' / 'keys_task.psyexp'))

# --- mouse_slider: click the target box (mouse, clickable stimuli, correctAns), then rate (slider)
e = new_exp('mouse_slider')
boxes = []
for name, x in (('left_box', -0.3), ('right_box', 0.3)):
    p = PolygonComponent(e, 'choose', name=name, shape='square', units='height')
    p.params['pos'].val = f'({x}, 0)'
    p.params['size'].val = '(0.2, 0.2)'
    p.params['stopVal'].val = ''
    boxes.append(p)
m = MouseComponent(e, 'choose', name='mouse')
m.params['clickable'].val = 'left_box, right_box'
m.params['forceEndRoutineOnPress'].val = 'valid click'
m.params['storeCorrect'].val = True
m.params['correctAns'].val = '$target'
m.params['stopVal'].val = ''
choose = add_routine(e, 'choose', boxes + [m])
s = SliderComponent(e, 'rate', name='rating')
s.params['ticks'].val = '(1, 2, 3, 4, 5)'
s.params['granularity'].val = 1
s.params['forceEndRoutine'].val = True
s.params['font'].val = 'DejaVu Sans'
rate = add_routine(e, 'rate', [text(e, 'rate', 'question', 'how sure?'), s])
loop = TrialHandler(e, name='trials', nReps=4, conditionsFile='conditions.csv', loopType='random')
e.flow.addLoop(loop, 0, 2)
e.flow.addRoutine(choose, 1)
e.flow.addRoutine(rate, 2)
(out / 'mouse_slider').mkdir(exist_ok=True)
(out / 'mouse_slider' / 'conditions.csv').write_text('target\nleft_box\nright_box\n')
e.saveToXML(str(out / 'mouse_slider' / 'mouse_slider.psyexp'))
print('ok')
