# One image for every Flask Track service; the command picks the service.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY core core
COPY flasktrack flasktrack
COPY api api
COPY domain domain
COPY workflows workflows
COPY activities activities
COPY worker worker
COPY lake lake
COPY flight flight
COPY web web
COPY migrations migrations
RUN pip install --no-cache-dir -e .
ENV FLASKTRACK_DATA_DIR=/data FLASKTRACK_API_HOST=0.0.0.0 FLASKTRACK_FLIGHT_HOST=0.0.0.0
VOLUME /data
ENTRYPOINT ["flasktrack"]
