#!/usr/bin/env python
# -*- coding: utf-8 -*-
"""
rt_demo: a hand-written, "Builder-style" PsychoPy experiment.

A simulated reaction-time task that runs unattended: each trial shows a
fixation cross and then a target circle on the left or right of the screen.
Nobody is expected to respond, so a response time (and whether it was correct)
is drawn from numpy's random generator and stored in the data file.

The module exposes the same functions as a script compiled by PsychoPy
Builder (``setupData``, ``setupLogging``, ``setupWindow``, ``setupDevices``,
``pauseExperiment``, ``run``, ``saveData``, ``endExperiment``, ``quit``) and
the module-level ``expName`` / ``expInfo``, so it can be run standalone or
imported and driven by ``psychopy.session.Session`` (or a similar host).

expInfo keys used:
    participant   participant ID (default '')
    session       session label (default '001')
    n_trials      number of trials (default 10)
    seed          optional; seeds the simulated responses when present and
                  not empty, otherwise they are unseeded
"""

# --- Import packages ---
from psychopy import prefs
from psychopy import plugins
plugins.activatePlugins()
from psychopy import visual, core, data, logging, clock, hardware
from psychopy import __version__ as _psychopyVersion
from psychopy.constants import (
    NOT_STARTED, STARTED, PAUSED, STOPPED, STOPPING, FINISHED, priority
)

import numpy as np
import os
import sys

# the 'keyboard' device class used in setupDevices() is registered by this import
from psychopy.hardware import keyboard

# --- Setup global variables (available in all functions) ---
# create a device manager to handle hardware (keyboards, mice, etc.)
deviceManager = hardware.DeviceManager()
# ensure that relative paths start from the same directory as this script
_thisDir = os.path.dirname(os.path.abspath(__file__))
# store info about the experiment session
psychopyVersion = _psychopyVersion
expName = 'rt_demo'
expVersion = ''
# a list of functions to run when the experiment ends (starts off blank)
runAtExit = []
# information about this experiment
expInfo = {
    'participant': '',
    'session': '001',
    'n_trials': 10,
    'date|hid': data.getDateStr(),
    'expName|hid': expName,
    'expVersion|hid': expVersion,
    'psychopyVersion|hid': psychopyVersion,
}

# --- Task constants ---
TRIAL_DURATION = 0.3  # s, whole trial (fixation + target)
FIXATION_DURATION = 0.05  # s, fixation cross before the target
TARGET_DURATION = TRIAL_DURATION - FIXATION_DURATION  # s, target on screen
DEFAULT_N_TRIALS = 10
TARGET_X = 0.3  # horizontal offset of the target ('height' units)
FONT = 'DejaVu Sans'

# --- Define some variables which will change depending on pilot mode ---
# work out from system args whether we are running in pilot mode (`--pilot`)
PILOTING = core.setPilotModeFromArgs()
# start off with values from experiment settings
_fullScr = False
_winSize = [800, 600]
# if in pilot mode, apply overrides according to preferences
if PILOTING:
    # replace default participant ID
    if prefs.piloting['replaceParticipantID']:
        expInfo['participant'] = 'pilot'


def showExpInfoDlg(expInfo):
    """
    Show participant info dialog (not called by default: this demo runs
    unattended).

    Parameters
    ==========
    expInfo : dict
        Information about this experiment.

    Returns
    ==========
    dict
        Information about this experiment.
    """
    from psychopy import gui
    dlg = gui.DlgFromDict(
        dictionary=expInfo, sortKeys=False, title=expName, alwaysOnTop=True
    )
    if dlg.OK == False:
        core.quit()  # user pressed cancel
    return expInfo


def setupData(expInfo, dataDir=None):
    """
    Make an ExperimentHandler to handle trials and saving.

    Parameters
    ==========
    expInfo : dict
        Information about this experiment.
    dataDir : Path, str or None
        Folder to save the data to, leave as None to create a folder in the
        directory of this script.

    Returns
    ==========
    psychopy.data.ExperimentHandler
        Handler object for this experiment, contains the data to save and
        information about where to save it to.
    """
    # remove dialog-specific syntax from expInfo
    for key, val in expInfo.copy().items():
        newKey, _ = data.utils.parsePipeSyntax(key)
        expInfo[newKey] = expInfo.pop(key)
    # tolerate an expInfo that lacks the keys the filename needs
    expInfo.setdefault('participant', '')
    expInfo.setdefault('date', data.getDateStr())

    # data file name stem = absolute path + name; later add .csv, .log, etc
    if dataDir is None:
        dataDir = _thisDir
    dataDir = str(dataDir)
    filename = 'data' + os.sep + '%s_%s_%s' % (
        expInfo['participant'], expName, expInfo['date'])
    # make sure filename is relative to dataDir
    if os.path.isabs(filename):
        dataDir = os.path.commonprefix([dataDir, filename])
        filename = os.path.relpath(filename, dataDir)

    # an ExperimentHandler isn't essential but helps with data saving
    thisExp = data.ExperimentHandler(
        name=expName, version=expVersion,
        extraInfo=expInfo, runtimeInfo=None,
        originPath=os.path.abspath(__file__),
        savePickle=True, saveWideText=True,
        dataFileName=dataDir + os.sep + filename, sortColumns='time'
    )
    # store pilot mode in data file
    thisExp.addData('piloting', PILOTING, priority=priority.LOW)
    thisExp.setPriority('thisRow.t', priority.CRITICAL)
    thisExp.setPriority('expName', priority.LOW)
    # return experiment handler
    return thisExp


def setupLogging(filename):
    """
    Setup a log file and tell it what level to log at.

    Parameters
    ==========
    filename : str or pathlib.Path
        Filename to save log file and data files as, doesn't need an extension.

    Returns
    ==========
    psychopy.logging.LogFile
        Text stream to receive inputs from the logging system.
    """
    # set how much information should be printed to the console / app
    logging.console.setLevel('warning')
    # save a log file for detail verbose info
    logFile = logging.LogFile(filename + '.log')
    logFile.setLevel(logging.getLevel('info'))
    return logFile


def setupWindow(expInfo=None, win=None):
    """
    Setup the Window

    Parameters
    ==========
    expInfo : dict
        Information about this experiment.
    win : psychopy.visual.Window
        Window to setup - leave as None to create a new window.

    Returns
    ==========
    psychopy.visual.Window
        Window in which to run this experiment.
    """
    if win is None:
        # if not given a window to setup, make one
        win = visual.Window(
            size=_winSize, fullscr=_fullScr, screen=0,
            winType='pyglet', allowGUI=True, allowStencil=False,
            monitor='testMonitor', color='black', colorSpace='rgb',
            backgroundImage='', backgroundFit='none',
            blendMode='avg', useFBO=True,
            units='height',
            checkTiming=False  # we're going to do this ourselves in a moment
        )
    else:
        # if we have a window, just set the attributes which are safe to set
        win.color = 'black'
        win.colorSpace = 'rgb'
        win.backgroundImage = ''
        win.backgroundFit = 'none'
        win.units = 'height'
    if expInfo is not None:
        # get/measure frame rate if not already known
        if win._monitorFrameRate is None:
            win._monitorFrameRate = win.getActualFrameRate(
                infoMsg='Attempting to measure frame rate of screen, please wait...')
        expInfo['frameRate'] = win._monitorFrameRate
    win.hideMessage()
    if PILOTING:
        # show a visual indicator if we're in piloting mode
        if prefs.piloting['showPilotingIndicator']:
            win.showPilotingIndicator()
        # always show the mouse in piloting mode
        if prefs.piloting['forceMouseVisible']:
            win.mouseVisible = True

    return win


def setupDevices(expInfo, thisExp, win):
    """
    Setup whatever devices are available and add them to the device manager
    (deviceManager).

    Parameters
    ==========
    expInfo : dict
        Information about this experiment.
    thisExp : psychopy.data.ExperimentHandler
        Handler object for this experiment.
    win : psychopy.visual.Window
        Window in which to run this experiment.

    Returns
    ==========
    bool
        True if completed successfully.
    """
    # no ioHub, no eyetracker
    deviceManager.ioServer = None
    # create a default keyboard (e.g. to check for escape)
    if deviceManager.getDevice('defaultKeyboard') is None:
        deviceManager.addDevice(
            deviceClass='keyboard', deviceName='defaultKeyboard', backend='ptb'
        )
    # return True if completed successfully
    return True


def pauseExperiment(thisExp, win=None, timers=[], currentRoutine=None):
    """
    Pause this experiment, preventing the flow from advancing to the next
    routine until resumed.

    Parameters
    ==========
    thisExp : psychopy.data.ExperimentHandler
        Handler object for this experiment.
    win : psychopy.visual.Window
        Window for this experiment.
    timers : list, tuple
        List of timers to reset once pausing is finished.
    currentRoutine : psychopy.data.Routine
        Current Routine we are in at time of pausing, if any.
    """
    # if we are not paused, do nothing
    if thisExp.status != PAUSED:
        return

    # start a timer to figure out how long we're paused for
    pauseTimer = core.Clock()
    # pause any playback components
    if currentRoutine is not None:
        for comp in currentRoutine.getPlaybackComponents():
            comp.pause()
    # make sure we have a keyboard
    defaultKeyboard = deviceManager.getDevice('defaultKeyboard')
    if defaultKeyboard is None:
        defaultKeyboard = deviceManager.addKeyboard(
            deviceClass='keyboard',
            deviceName='defaultKeyboard',
            backend='PsychToolbox',
        )
    # run a while loop while we wait to unpause
    while thisExp.status == PAUSED:
        # check for quit (typically the Esc key)
        if defaultKeyboard.getKeys(keyList=['escape']):
            endExperiment(thisExp, win=win)
        # sleep 1ms so other threads can execute
        clock.time.sleep(0.001)
    # if stop was requested while paused, quit
    if thisExp.status == FINISHED:
        endExperiment(thisExp, win=win)
    # resume any playback components
    if currentRoutine is not None:
        for comp in currentRoutine.getPlaybackComponents():
            comp.play()
    # reset any timers
    for timer in timers:
        timer.addTime(-pauseTimer.getTime())


def _makeRNG(expInfo):
    """numpy Generator seeded from expInfo['seed'] when given, else unseeded."""
    seed = expInfo.get('seed', None)
    if seed is None or str(seed).strip() in ('', 'None'):
        return np.random.default_rng()
    return np.random.default_rng(int(seed))


def run(expInfo, thisExp, win, globalClock=None, thisSession=None):
    """
    Run the experiment flow.

    Parameters
    ==========
    expInfo : dict
        Information about this experiment.
    thisExp : psychopy.data.ExperimentHandler
        Handler object for this experiment.
    win : psychopy.visual.Window
        Window in which to run this experiment.
    globalClock : psychopy.core.clock.Clock, str or None
        Clock to get global time from - supply None to make a new one.
    thisSession : psychopy.session.Session or None
        Handle of the Session object this experiment is being run from, if any.
    """
    # mark experiment as started
    thisExp.status = STARTED
    # update experiment info
    expInfo['date'] = data.getDateStr()
    expInfo['expName'] = expName
    expInfo['expVersion'] = expVersion
    expInfo['psychopyVersion'] = psychopyVersion
    # make sure window is set to foreground to prevent losing focus
    win.winHandle.activate()
    # get/create a default keyboard (e.g. to check for escape)
    defaultKeyboard = deviceManager.getDevice('defaultKeyboard')
    if defaultKeyboard is None:
        defaultKeyboard = deviceManager.addDevice(
            deviceClass='keyboard', deviceName='defaultKeyboard', backend='PsychToolbox'
        )
    # make sure we're running in the directory for this experiment
    os.chdir(_thisDir)
    # get filename from ExperimentHandler for convenience
    filename = thisExp.dataFileName
    frameTolerance = 0.001  # how close to onset before 'same' frame
    endExpNow = False  # flag for 'escape' or other condition => quit the exp

    # --- Task parameters from expInfo ---
    nTrials = int(expInfo.get('n_trials', DEFAULT_N_TRIALS))
    rng = _makeRNG(expInfo)
    # one condition per trial: which side the target appears on
    # (balanced: half left, half right, in random order)
    sides = rng.permutation((['left', 'right'] * (nTrials // 2 + 1))[:nTrials])
    trialList = [
        {'trial_index': i, 'target_side': str(side)} for i, side in enumerate(sides)
    ]

    # --- Initialize components for Routine "trial" ---
    fixation = visual.TextStim(win=win, name='fixation',
        text='+', font=FONT,
        pos=(0, 0), height=0.08, wrapWidth=None, ori=0.0,
        color='white', colorSpace='rgb', opacity=None,
        languageStyle='LTR',
        depth=0.0)
    target = visual.Circle(win=win, name='target',
        radius=0.05, edges=64, pos=(0, 0),
        fillColor='white', lineColor='white', colorSpace='rgb',
        opacity=None, depth=-1.0, interpolate=True)

    # create some handy timers

    # global clock to track the time since experiment started
    if globalClock is None:
        # create a clock if not given one
        globalClock = core.Clock()
    if isinstance(globalClock, str):
        # if given a string, make a clock according to it
        if globalClock == 'float':
            # get timestamps as a simple value
            globalClock = core.Clock(format='float')
        elif globalClock == 'iso':
            # get timestamps in ISO format
            globalClock = core.Clock(format='%Y-%m-%d_%H:%M:%S.%f%z')
        else:
            # get timestamps in a custom format
            globalClock = core.Clock(format=globalClock)
    logging.setDefaultClock(globalClock)
    # routine timer to track time remaining of each (non-slip) routine
    routineTimer = core.Clock()
    win.flip()  # flip window to reset last flip timer
    # store the exact time the global clock started
    expInfo['expStart'] = data.getDateStr(
        format='%Y-%m-%d %Hh%M.%S.%f %z', fractionalSecondDigits=6
    )

    # set up handler to look after the trial sequence
    trials = data.TrialHandler2(
        name='trials',
        nReps=1,
        method='sequential',
        extraInfo=expInfo,
        originPath=-1,
        trialList=trialList,
        seed=None,
        isTrials=True,
    )
    thisExp.addLoop(trials)  # add the loop to the experiment
    thisTrial = trials.trialList[0]  # so we can initialise stimuli with some values
    if thisSession is not None:
        # if running in a Session with a Liaison client, send data up to now
        thisSession.sendExperimentData()

    for thisTrial in trials:
        trials.status = STARTED
        if hasattr(thisTrial, 'status'):
            thisTrial.status = STARTED
        currentLoop = trials
        thisExp.timestampOnFlip(win, 'thisRow.t', format=globalClock.format)
        if thisSession is not None:
            # if running in a Session with a Liaison client, send data up to now
            thisSession.sendExperimentData()
        trial_index = thisTrial['trial_index']
        target_side = thisTrial['target_side']

        # --- Prepare to start Routine "trial" ---
        # create an object to store info about Routine trial
        trial = data.Routine(
            name='trial',
            components=[fixation, target],
        )
        trial.status = NOT_STARTED
        continueRoutine = True
        # update component parameters for each repeat
        target.setPos((-TARGET_X if target_side == 'left' else TARGET_X, 0))
        # store start times for trial
        trial.tStartRefresh = win.getFutureFlipTime(clock=globalClock)
        trial.tStart = globalClock.getTime(format='float')
        trial.status = STARTED
        thisExp.addData('trial.started', trial.tStart)
        trial.maxDuration = None
        # keep track of which components have finished
        for thisComponent in trial.components:
            thisComponent.tStart = None
            thisComponent.tStop = None
            thisComponent.tStartRefresh = None
            thisComponent.tStopRefresh = None
            if hasattr(thisComponent, 'status'):
                thisComponent.status = NOT_STARTED
        # reset timers
        t = 0
        _timeToFirstFrame = win.getFutureFlipTime(clock="now")
        frameN = -1

        # --- Run Routine "trial" ---
        thisExp.currentRoutine = trial
        trial.forceEnded = routineForceEnded = not continueRoutine
        while continueRoutine and routineTimer.getTime() < TRIAL_DURATION:
            # if trial has changed, end Routine now
            if hasattr(thisTrial, 'status') and thisTrial.status == STOPPING:
                continueRoutine = False
            # get current time
            t = routineTimer.getTime()
            tThisFlip = win.getFutureFlipTime(clock=routineTimer)
            tThisFlipGlobal = win.getFutureFlipTime(clock=None)
            frameN = frameN + 1  # number of completed frames (so 0 is the first frame)
            # update/draw components on each frame

            # *fixation* updates
            # if fixation is starting this frame...
            if fixation.status == NOT_STARTED and tThisFlip >= 0.0 - frameTolerance:
                # keep track of start time/frame for later
                fixation.frameNStart = frameN  # exact frame index
                fixation.tStart = t  # local t and not account for scr refresh
                fixation.tStartRefresh = tThisFlipGlobal  # on global time
                win.timeOnFlip(fixation, 'tStartRefresh')  # time at next scr refresh
                # add timestamp to datafile
                thisExp.timestampOnFlip(win, 'fixation.started')
                # update status
                fixation.status = STARTED
                fixation.setAutoDraw(True)
            # if fixation is stopping this frame...
            if fixation.status == STARTED:
                # is it time to stop? (based on local time: the target replaces it)
                if tThisFlip >= FIXATION_DURATION - frameTolerance:
                    # keep track of stop time/frame for later
                    fixation.tStop = t  # not accounting for scr refresh
                    fixation.tStopRefresh = tThisFlipGlobal  # on global time
                    fixation.frameNStop = frameN  # exact frame index
                    # add timestamp to datafile
                    thisExp.timestampOnFlip(win, 'fixation.stopped')
                    # update status
                    fixation.status = FINISHED
                    fixation.setAutoDraw(False)

            # *target* updates
            # if target is starting this frame...
            if target.status == NOT_STARTED and tThisFlip >= FIXATION_DURATION - frameTolerance:
                # keep track of start time/frame for later
                target.frameNStart = frameN  # exact frame index
                target.tStart = t  # local t and not account for scr refresh
                target.tStartRefresh = tThisFlipGlobal  # on global time
                win.timeOnFlip(target, 'tStartRefresh')  # time at next scr refresh
                # add timestamp to datafile
                thisExp.timestampOnFlip(win, 'target.started')
                # update status
                target.status = STARTED
                target.setAutoDraw(True)
            # if target is stopping this frame...
            if target.status == STARTED:
                # is it time to stop? (based on local time: end of the trial)
                if tThisFlip >= TRIAL_DURATION - frameTolerance:
                    # keep track of stop time/frame for later
                    target.tStop = t  # not accounting for scr refresh
                    target.tStopRefresh = tThisFlipGlobal  # on global time
                    target.frameNStop = frameN  # exact frame index
                    # add timestamp to datafile
                    thisExp.timestampOnFlip(win, 'target.stopped')
                    # update status
                    target.status = FINISHED
                    target.setAutoDraw(False)

            # check for quit (typically the Esc key)
            if defaultKeyboard.getKeys(keyList=["escape"]):
                thisExp.status = FINISHED
            if thisExp.status == FINISHED or endExpNow:
                endExperiment(thisExp, win=win)
                return
            # pause experiment here if requested
            if thisExp.status == PAUSED:
                pauseExperiment(
                    thisExp=thisExp,
                    win=win,
                    timers=[routineTimer, globalClock],
                    currentRoutine=trial,
                )
                # skip the frame we paused on
                continue

            # has a Component requested the Routine to end?
            if not continueRoutine:
                trial.forceEnded = routineForceEnded = True
            # has the Routine been forcibly ended?
            if trial.forceEnded or routineForceEnded:
                break
            # has every Component finished?
            continueRoutine = False
            for thisComponent in trial.components:
                if hasattr(thisComponent, "status") and thisComponent.status != FINISHED:
                    continueRoutine = True
                    break  # at least one component has not yet finished

            # refresh the screen
            if continueRoutine:  # don't flip if this routine is over or we'll get a blank screen
                win.flip()

        # --- Ending Routine "trial" ---
        # anything still on screen is taken off now
        for thisComponent in trial.components:
            if getattr(thisComponent, "status", None) == STARTED:
                thisComponent.tStop = t
                thisComponent.status = FINISHED
                thisExp.timestampOnFlip(win, thisComponent.name + '.stopped')
            if hasattr(thisComponent, "setAutoDraw"):
                thisComponent.setAutoDraw(False)
        # flip once more so the target really disappears and timestamps queued
        # for the next flip (e.g. 'target.stopped') land in this trial's row
        # (non-slip timing below absorbs the extra frame)
        win.flip()
        # store stop times for trial
        trial.tStop = globalClock.getTime(format='float')
        trial.tStopRefresh = tThisFlipGlobal
        thisExp.addData('trial.stopped', trial.tStop)
        # simulated response (nobody is there to press a key)
        rt = float(np.clip(rng.lognormal(mean=np.log(0.35), sigma=0.25), 0.15, 1.5))
        correct = int(rng.random() < 0.9)
        thisExp.addData('trial_index', trial_index)
        thisExp.addData('target_side', target_side)
        thisExp.addData('rt', rt)
        thisExp.addData('correct', correct)
        # using non-slip timing so subtract the expected duration of this Routine
        # (unless ended on request)
        if trial.forceEnded:
            routineTimer.reset()
        else:
            routineTimer.addTime(-TRIAL_DURATION)
        # mark thisTrial as finished
        if hasattr(thisTrial, 'status'):
            thisTrial.status = FINISHED
        # if awaiting a pause, pause now
        if trials.status == PAUSED:
            thisExp.status = PAUSED
            pauseExperiment(
                thisExp=thisExp,
                win=win,
                timers=[globalClock],
            )
            # once done pausing, restore running status
            trials.status = STARTED
        thisExp.nextEntry()

    # completed nTrials trials of 'trials'
    trials.status = FINISHED

    if thisSession is not None:
        # if running in a Session with a Liaison client, send data up to now
        thisSession.sendExperimentData()

    # mark experiment as finished
    endExperiment(thisExp, win=win)


def saveData(thisExp):
    """
    Save data from this experiment

    Parameters
    ==========
    thisExp : psychopy.data.ExperimentHandler
        Handler object for this experiment.
    """
    filename = thisExp.dataFileName
    # these shouldn't be strictly necessary (should auto-save)
    thisExp.saveAsWideText(filename + '.csv', delim='auto')
    thisExp.saveAsPickle(filename)


def endExperiment(thisExp, win=None):
    """
    End this experiment, performing final shut down operations.

    This function does NOT close the window or end the Python process - use
    `quit` for this.

    Parameters
    ==========
    thisExp : psychopy.data.ExperimentHandler
        Handler object for this experiment.
    win : psychopy.visual.Window
        Window for this experiment.
    """
    # stop any playback components
    if thisExp.currentRoutine is not None:
        for comp in thisExp.currentRoutine.getPlaybackComponents():
            comp.stop()
    if win is not None:
        # remove autodraw from all current components
        win.clearAutoDraw()
        # Flip one final time so any remaining win.callOnFlip()
        # and win.timeOnFlip() tasks get executed
        win.flip()
    # return console logger level to WARNING
    logging.console.setLevel(logging.WARNING)
    # mark experiment handler as finished
    thisExp.status = FINISHED
    # run any 'at exit' functions
    for fcn in runAtExit:
        fcn()
    logging.flush()


def quit(thisExp, win=None, thisSession=None):
    """
    Fully quit, closing the window and ending the Python process.

    Parameters
    ==========
    win : psychopy.visual.Window
        Window to close.
    thisSession : psychopy.session.Session or None
        Handle of the Session object this experiment is being run from, if any.
    """
    thisExp.abort()  # or data files will save again on exit
    # make sure everything is closed down
    if win is not None:
        # Flip one final time so any remaining win.callOnFlip()
        # and win.timeOnFlip() tasks get executed before quitting
        win.flip()
        win.close()
    logging.flush()
    if thisSession is not None:
        thisSession.stop()
    # terminate Python process
    core.quit()


# if running this experiment as a script...
if __name__ == '__main__':
    # call all functions in order (no info dialog: this demo runs unattended)
    thisExp = setupData(expInfo=expInfo)
    logFile = setupLogging(filename=thisExp.dataFileName)
    win = setupWindow(expInfo=expInfo)
    setupDevices(expInfo=expInfo, thisExp=thisExp, win=win)
    run(
        expInfo=expInfo,
        thisExp=thisExp,
        win=win,
        globalClock='float'
    )
    saveData(thisExp=thisExp)
    quit(thisExp=thisExp, win=win)
