@echo off
rem Easel launcher for Windows: install what is missing, then start the web UI.
rem   webui.bat [flags]        then open http://127.0.0.1:7860
rem   webui.bat --exit         install only, do not start
rem Same steps as webui.sh; the install logic is shared in scripts\install.py.
rem PYTHON picks the Python that creates venv\ (as in A1111's webui-user.bat),
rem COMMANDLINE_ARGS adds flags (app.py merges it), TORCH_COMMAND overrides torch.
setlocal
cd /d "%~dp0"

if not defined PYTHON set "PYTHON=python"

if exist venv\Scripts\python.exe goto :install
if exist venv\ (
    echo Easel: error: venv\ exists but has no Scripts\python.exe; delete venv\ and start again 1>&2
    exit /b 1
)
echo Easel: creating venv\ with %PYTHON%
%PYTHON% -m venv venv
if errorlevel 1 (
    if exist venv\ rmdir /s /q venv
    echo Easel: error: "%PYTHON% -m venv" failed; install Python 3.10+ from python.org or set PYTHON 1>&2
    exit /b 1
)

:install
venv\Scripts\python.exe scripts\install.py -- %*
if errorlevel 1 exit /b 1

rem Never reach the network at run time: no model hub, no analytics.
set "HF_HUB_OFFLINE=1"
set "HF_HUB_DISABLE_TELEMETRY=1"
set "GRADIO_ANALYTICS_ENABLED=False"

for %%a in (%* %COMMANDLINE_ARGS%) do (
    if "%%~a"=="--exit" (
        echo Easel: --exit given, not starting
        exit /b 0
    )
)

venv\Scripts\python.exe app.py %*
exit /b %errorlevel%
