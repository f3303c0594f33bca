#!/bin/sh
set -eu
echo "setting up $APP_ENV"
