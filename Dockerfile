# nurture: one image for every role (web, worker, beat, migrate); the compose file picks the
# command. Build: docker build -t nurture .   See docs/operations.md.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/nurture
WORKDIR /src
# Dependencies first, from pyproject.toml alone, so editing the code does not reinstall them:
# install a stub of the package, keep its dependencies, drop the stub.
COPY pyproject.toml ./
RUN mkdir nurture workers && touch nurture/__init__.py workers/__init__.py \
    && /opt/nurture/bin/pip install . \
    && /opt/nurture/bin/pip uninstall -y nurture \
    && rm -rf nurture workers build *.egg-info
# The real package (no test extras). Sequence folders, when the repository has them, go to
# /app/templates, where `nurture sequences apply templates/sequences` finds them.
COPY . ./
RUN /opt/nurture/bin/pip install --no-deps . \
    && mkdir -p /app \
    && if [ -d templates ]; then cp -a templates /app/templates; fi

FROM python:3.11-slim
# tzdata: send windows are computed in each subscriber's own IANA time zone (zoneinfo).
RUN apt-get update \
    && apt-get install -y --no-install-recommends tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 nurture \
    && useradd --system --uid 10001 --gid nurture --home-dir /app --shell /usr/sbin/nologin nurture
ENV PATH=/opt/nurture/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY --from=build /opt/nurture /opt/nurture
# /app is the working directory and the only place the process writes (beat keeps its small
# celerybeat-schedule file here), so it belongs to the unprivileged user.
COPY --from=build --chown=nurture:nurture /app /app
WORKDIR /app
USER nurture
EXPOSE 8000
# The health check lives in docker-compose.yml on the web service only: the same image also
# runs workers and beat, which serve no HTTP.
CMD ["nurture", "web", "--host", "0.0.0.0", "--port", "8000"]
